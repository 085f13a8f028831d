//! Run trees and run records under the state directory.
//!
//! `runs/<run-id>/` holds the run record (`run.json`), the run's log
//! (`run.log`) and its test reports (`report/`), which outlive the run; the
//! run *tree* is `runs/<run-id>/abra/` (the per-run ABRA_DIR with its own
//! recipe checkout) and `runs/<run-id>/work/`, removed at the end of the run.
//!
//! Removal is only ever of a path proven to lie inside the state directory:
//! both are canonicalised and compared component-wise, and symlinks are
//! removed as links (never followed), so a planted link cannot aim a
//! recursive delete at the canonical abra home.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::outcome::Outcome;
use crate::phase::Phase;
use crate::tier::Tier;
use crate::verdict::Verdict;

/// The layout of one run under the state directory.
#[derive(Clone, Debug)]
pub(crate) struct RunDir {
    pub state_dir: PathBuf,
    pub root: PathBuf,
}

impl RunDir {
    pub(crate) fn new(state_dir: &Path, run_id: &str) -> RunDir {
        RunDir {
            state_dir: state_dir.to_path_buf(),
            root: state_dir.join("runs").join(run_id),
        }
    }
    pub(crate) fn record(&self) -> PathBuf {
        self.root.join("run.json")
    }
    pub(crate) fn log(&self) -> PathBuf {
        self.root.join("run.log")
    }
    pub(crate) fn report(&self) -> PathBuf {
        self.root.join("report")
    }
    /// The per-run ABRA_DIR.
    pub(crate) fn abra_dir(&self) -> PathBuf {
        self.root.join("abra")
    }
    /// Scratch space of the run (tests staged from the ref under test).
    pub(crate) fn work(&self) -> PathBuf {
        self.root.join("work")
    }
    pub(crate) fn recipe_checkout(&self, recipe: &str) -> PathBuf {
        self.abra_dir().join("recipes").join(recipe)
    }

    /// Removes the run tree (abra dir and scratch), keeping record, log and
    /// reports.
    pub(crate) fn remove_tree(&self) -> Result<()> {
        for p in [self.abra_dir(), self.work()] {
            remove_inside(&self.state_dir, &p)?;
        }
        Ok(())
    }
}

/// Creates `dir` and its parents with mode 0755.
pub(crate) fn mkdirs(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .with_context(|| format!("failed to create directory {}", dir.display()))
}

/// Recursively removes `path`, but only after proving it lies strictly
/// inside `state_dir`. A missing path is fine.
pub(crate) fn remove_inside(state_dir: &Path, path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("failed to stat {}", path.display())),
    };
    let state = state_dir
        .canonicalize()
        .with_context(|| format!("failed to resolve state directory {}", state_dir.display()))?;
    // Resolve the parent, not the path itself: the last component may be a
    // symlink, which is removed as a link.
    let parent = path
        .parent()
        .context("refusing to remove a path without a parent")?
        .canonicalize()
        .with_context(|| format!("failed to resolve {}", path.display()))?;
    let name = path
        .file_name()
        .context("refusing to remove a path without a name")?;
    let resolved = parent.join(name);
    if !resolved.starts_with(&state) || resolved == state {
        bail!(
            "refusing to remove {}: it is not inside the state directory {}",
            resolved.display(),
            state.display()
        );
    }
    if meta.file_type().is_dir() {
        fs::remove_dir_all(&resolved)
    } else {
        fs::remove_file(&resolved)
    }
    .with_context(|| format!("failed to remove {}", resolved.display()))
}

/// How durable a replacement by [`replace`] is once it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The new file's data is on disk (fdatasync) before the rename: after
    /// a crash the name holds the old content or the new, whole, and the
    /// rename itself is durable with the file system's next journal commit.
    /// Enough for a file rewritten often whose newest version may be lost
    /// to a host crash; the JSON checkpoint of earlier releases was one
    /// (`examples/bench_checkpoint.rs` still measures that write).
    Data,
    /// Also the directory fsynced after the rename: the new content
    /// survives a crash.
    Full,
}

/// Writes `bytes` to `path` atomically and durably: a temporary file in
/// the same directory, fsync, rename, fsync of the directory (see
/// [`replace`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    replace(path, bytes, Durability::Full)
}

/// [`write_atomic`] of output cc-ci-run writes for people and other tools
/// to read (the run record, reports, JUnit, metrics, the timeline page),
/// the secrets replaced by `***` first (the module `redact`). Not for files
/// whose values must stay (the app's env file).
pub fn write_output(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, &crate::redact::bytes(bytes))
}

/// Replaces `path` by `bytes` atomically: one write of a temporary file in
/// the same directory, then fsync ([`Durability::Full`]: of the whole file
/// and, after the rename, of the directory; [`Durability::Data`]: of its
/// data alone), then rename. Readers see the old or the new content, never
/// a torn one. Every atomic file of cc-ci-run (run records, checkpoints,
/// reports, the env file rewrite, metrics, the timeline page) goes through
/// here.
///
/// When any step fails (a full disk fails the write or the fsync) the
/// temporary file is removed: nothing reads it, and on a full disk it holds
/// some of the very space that is missing (SPEC section 1: no temporary
/// files left behind). The error names the target, not the temporary file.
pub fn replace(path: &Path, bytes: &[u8], durability: Durability) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let what = || format!("failed to write {}", path.display());
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(&tmp)
        .with_context(|| format!("failed to create {}", tmp.display()))
        .with_context(what)?;
    let mut pending = PendingTemp {
        path: tmp,
        renamed: false,
    };
    f.write_all(bytes).with_context(what)?;
    match durability {
        Durability::Data => f.sync_data(),
        Durability::Full => f.sync_all(),
    }
    .with_context(what)?;
    drop(f);
    pending.rename_to(path).with_context(what)?;
    // The rename is durable once the directory entry is. Best effort: the
    // new content is in place either way, and a failure here says nothing
    // a reader could act on.
    if durability == Durability::Full {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// A temporary file of [`replace`] that is removed when dropped unless
/// it was renamed into place: every early return (and a panic) cleans up.
struct PendingTemp {
    path: PathBuf,
    renamed: bool,
}

impl PendingTemp {
    fn rename_to(&mut self, target: &Path) -> std::io::Result<()> {
        fs::rename(&self.path, target)?;
        self.renamed = true;
        Ok(())
    }
}

impl Drop for PendingTemp {
    fn drop(&mut self) {
        if !self.renamed {
            // Best effort: the caller already has the error that matters.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The run record, `runs/<run-id>/run.json` (fields documented in the README).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub run_id: String,
    pub recipe: String,
    /// The ref as asked for (`refs/pull/N/head`, a branch, a sha, or the default branch).
    pub git_ref: String,
    /// The commit under test, once resolved.
    #[serde(default)]
    pub sha: Option<String>,
    #[serde(default)]
    pub pr: Option<u32>,
    pub domain: String,
    pub stack: String,
    /// The harness's pid (the process that holds the locks).
    pub pid: i32,
    #[serde(default)]
    pub wrapper_pid: i32,
    pub host: String,
    pub phase: Phase,
    pub started: String,
    #[serde(default)]
    pub updated: String,
    #[serde(default)]
    pub finished: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// The version the install tier deployed first (None: quick or no release).
    #[serde(default)]
    pub base_version: Option<String>,
    /// The release tag at the commit under test, if any (for `--base last-green`).
    #[serde(default)]
    pub tested_version: Option<String>,
    /// Tiers whose tests ran, in order.
    #[serde(default)]
    pub tiers: Vec<Tier>,
    /// The verdict once known (see [`Verdict::of_exit`]).
    #[serde(default)]
    pub verdict: Option<Verdict>,
    /// The phase in which the verdict was decided (None when passed): the
    /// final `phase` of a finished run is `finished`, so this is where an
    /// operator reads why it went red.
    #[serde(default)]
    pub failed_phase: Option<Phase>,
    /// Why a red run is red, in one line, when an error decided it (the
    /// error as the log's `error:` line says it; a signal names itself).
    /// Absent when the verdict says it all: passed, or tests that failed
    /// (their reports name them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Each phase with its start and end, in order.
    #[serde(default)]
    pub phases: Vec<PhaseSpan>,
    /// The app-domain lock's timings.
    #[serde(default)]
    pub lock: Option<LockTimes>,
    /// Tests per tier.
    #[serde(default)]
    pub tests: Vec<TierTests>,
    /// The run's log file.
    #[serde(default)]
    pub log: Option<String>,
    /// The run's merged junit.xml, once written.
    #[serde(default)]
    pub junit: Option<String>,
    /// Tiers that did not run, each with why (the backup/restore tier of a
    /// recipe whose deployed services carry no enabled backup label).
    #[serde(default)]
    pub tiers_skipped: Vec<SkippedTier>,
    /// The convergence bound of the last deploy and where it came from.
    #[serde(default)]
    pub converge_bound: Option<ConvergeBound>,
    /// What went wrong without turning the run red, one line each (a
    /// paused update whose new tasks then ran for the stability window).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The files tests left in `CCCI_ARTIFACTS`, kept under the report
    /// directory: their paths.
    #[serde(default)]
    pub artifacts: Vec<String>,
}

/// A tier that did not run, and why.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SkippedTier {
    pub tier: String,
    pub reason: String,
}

/// A convergence bound and where it came from (SPEC section 3a).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConvergeBound {
    pub seconds: u64,
    pub source: String,
}

/// One phase of a run: `name` from `started` to `ended` (None while current).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PhaseSpan {
    pub name: Phase,
    pub started: String,
    #[serde(default)]
    pub ended: Option<String>,
    /// Measured on the monotonic clock (wall-clock steps do not skew it).
    #[serde(default)]
    pub duration_ms: Option<u64>,
}

/// The summary block a run prints last (SPEC section 3), from its record
/// (pure): verdict and failed phase, per-phase durations, tests per tier,
/// the lock wait, and where the log and the reports are.
pub(crate) fn summary_lines(r: &RunRecord) -> Vec<String> {
    use crate::units::human;
    let ms = |v: u64| human(std::time::Duration::from_millis(v));
    let mut out = vec![format!("── summary of run {} ──", r.run_id)];
    let verdict = r.verdict.map_or("unknown", Verdict::as_str);
    let code = r
        .exit_code
        .map(|c| format!("exit {c}"))
        .unwrap_or_else(|| "no exit code".into());
    out.push(match &r.failed_phase {
        Some(p) => format!("verdict: {verdict} ({code}), decided in phase {p}"),
        None => format!("verdict: {verdict} ({code})"),
    });
    out.push(format!(
        "recipe {} at {} ({}), app {}",
        r.recipe,
        r.sha.as_deref().unwrap_or("unresolved ref"),
        r.git_ref,
        r.domain
    ));
    let phases: Vec<String> = r
        .phases
        .iter()
        .filter(|p| p.name != Phase::Started)
        .map(|p| match p.duration_ms {
            Some(d) => format!("{} {}", p.name, ms(d)),
            None => p.name.to_string(),
        })
        .collect();
    if !phases.is_empty() {
        out.push(format!("phases: {}", phases.join(", ")));
    }
    if r.tests.is_empty() {
        out.push("tests: none ran".into());
    }
    for t in &r.tests {
        let cases = t.cases_passed + t.cases_failed + t.cases_skipped;
        // The floor is counted like any test; the line names it when it
        // was all the tier proved, or why the tier is red.
        let floor = match &t.floor {
            Some(Floor::Ran(Outcome::Passed)) if t.own == 0 => ", floor only",
            Some(Floor::Ran(Outcome::Failed)) => ", floor failed",
            _ => "",
        };
        out.push(format!(
            "tests {}: {} passed, {} failed, {} skipped{}{}{floor} ({})",
            t.tier,
            t.passed,
            t.failed,
            t.skipped,
            if t.flaky > 0 {
                format!(", {} flaky", t.flaky)
            } else {
                String::new()
            },
            if cases > 0 {
                format!(
                    "; cases: {} passed, {} failed, {} skipped",
                    t.cases_passed, t.cases_failed, t.cases_skipped
                )
            } else {
                String::new()
            },
            t.report_dir
        ));
        if let Some(why) = &t.floor_reason {
            out.push(format!("floor failed, {}: {why}", t.tier));
        }
        if !t.watch.is_empty() {
            let each: Vec<String> = t
                .watch
                .iter()
                .map(|w| format!("{} {}", w.service, w.restarts))
                .collect();
            out.push(format!(
                "restarts while watched, {}: {}",
                t.tier,
                each.join(", ")
            ));
        }
    }
    for t in &r.tiers_skipped {
        out.push(format!("tier {} not run: {}", t.tier, t.reason));
    }
    if !r.artifacts.is_empty() {
        out.push(format!("artifacts: {}", r.artifacts.join(", ")));
    }
    if let Some(c) = &r.converge_bound {
        out.push(format!(
            "convergence bound {} from {}",
            human(std::time::Duration::from_secs(c.seconds)),
            c.source
        ));
    }
    if let Some(l) = &r.lock {
        out.push(format!(
            "app lock {} ({}): waited {}",
            l.domain,
            l.backend,
            l.wait_ms.map(ms).unwrap_or_else(|| "-".into())
        ));
    }
    if let Some(junit) = &r.junit {
        out.push(format!(
            "junit: {junit} (every tier, and the failed phase of a red run)"
        ));
    }
    if let Some(log) = &r.log {
        out.push(format!("log: {log} (also: cc-ci-run logs {})", r.run_id));
    }
    out
}

/// When a run asked for, got and gave back its app-domain lock.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LockTimes {
    pub domain: String,
    /// `flock` or `swarm`.
    pub backend: String,
    pub requested: String,
    #[serde(default)]
    pub acquired: Option<String>,
    #[serde(default)]
    pub released: Option<String>,
    /// Milliseconds between request and acquisition (or the end of the wait).
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// One tier's test counts and where its report is.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TierTests {
    pub tier: String,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    #[serde(default)]
    pub flaky: usize,
    /// The tests' own cases (`CCCI_JUNIT_OUT`): passed, failed, skipped.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cases_passed: usize,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cases_failed: usize,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cases_skipped: usize,
    pub report_dir: String,
    /// The floor's result in this tier (`passed`, `failed`; counted in
    /// `passed`/`failed`), or `off` with why (SPEC section 3 step 9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<Floor>,
    /// Why the floor failed: the last status or connection error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor_reason: Option<String>,
    /// Tests of the recipe's own the filters selected in this tier.
    #[serde(default)]
    pub own: usize,
    /// The stack's services as watched from the tier's convergence to the
    /// end of its tests (SPEC section 3 step 8): how often each restarted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watch: Vec<Watched>,
}

/// The floor in a tier (SPEC section 3 step 9), as the record writes it:
/// the floor test's outcome word (`passed`, `failed`, ...), or
/// `off (WHY)` when the floor was turned off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Floor {
    Ran(Outcome),
    Off(String),
}

impl Serialize for Floor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Floor::Ran(o) => s.serialize_str(o.as_str()),
            Floor::Off(why) => s.collect_str(&format_args!("off ({why})")),
        }
    }
}

impl<'de> Deserialize<'de> for Floor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Floor, D::Error> {
        let text = String::deserialize(d)?;
        if let Some(why) = text.strip_prefix("off (").and_then(|w| w.strip_suffix(')')) {
            return Ok(Floor::Off(why.to_string()));
        }
        Outcome::parse(&text)
            .map(Floor::Ran)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown floor result {text:?}")))
    }
}

/// One service watched through a tier's tests.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Watched {
    pub service: String,
    /// Exits of its tasks while watched (each one the engine restarts).
    pub restarts: usize,
    /// Each exit: exit code, time, task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exits: Vec<String>,
}

impl RunRecord {
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_vec_pretty(self).context("failed to encode the run record")?;
        write_output(path, &text)
    }

    pub(crate) fn load(path: &Path) -> Result<RunRecord> {
        let text = fs::read(path).with_context(|| format!("failed to read {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("failed to parse {}", path.display()))
    }
}

/// Creates the symlink `link` → `target`, accepting an existing identical
/// link; anything else at that place is an error that says what to remove.
pub(crate) fn ensure_symlink(target: &Path, link: &Path) -> Result<()> {
    match fs::symlink_metadata(link) {
        Ok(m) if m.file_type().is_symlink() => {
            let cur = fs::read_link(link)
                .with_context(|| format!("failed to read link {}", link.display()))?;
            if cur == target {
                return Ok(());
            }
            bail!(
                "{} is a symlink to {}, not to {}: remove it ({}) and run again",
                link.display(),
                cur.display(),
                target.display(),
                link.display()
            );
        }
        Ok(_) => bail!(
            "{} exists and is not a symlink: remove it ({}) so it can be linked to {}",
            link.display(),
            link.display(),
            target.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("failed to stat {}", link.display())),
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("failed to link {} to {}", link.display(), target.display()))
}

/// Lists `runs/` of the state directory: each run directory's record or
/// why it cannot be read. A missing or unreadable state directory is an
/// error (exit 3 naming it); a state directory without `runs/` has no runs.
pub fn scan(state_dir: &Path) -> Result<Vec<(String, Result<RunRecord, String>)>> {
    std::fs::read_dir(state_dir).map_err(|e| {
        crate::exit::Failure::infra(format!(
            "cannot read the state directory {}: {e} (CCCI_STATE_DIR or --state-dir)",
            state_dir.display()
        ))
    })?;
    let runs = state_dir.join("runs");
    let rd = match std::fs::read_dir(&runs) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(crate::exit::Failure::infra(format!(
                "cannot read {}: {e}",
                runs.display()
            )))
        }
    };
    let mut out = Vec::new();
    for entry in rd.filter_map(|e| e.ok()) {
        let Some(id) = entry.file_name().to_str().map(String::from) else {
            continue;
        };
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path().join("run.json");
        let rec = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<RunRecord>(&bytes)
                .map_err(|e| format!("{} does not parse: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => Err(format!("{}: {e}", path.display())),
        };
        out.push((id, rec));
    }
    out.sort_by(|a, b| {
        let key = |r: &Result<RunRecord, String>| r.as_ref().map(|r| r.started.clone()).ok();
        key(&a.1).cmp(&key(&b.1)).then_with(|| a.0.cmp(&b.0))
    });
    Ok(out)
}

/// Every readable run record of the state directory, oldest first
/// (unreadable ones are left out): what `history`, the timeline, the
/// metrics and the run's own look at earlier runs read.
pub fn load_records(state_dir: &Path) -> Result<Vec<RunRecord>> {
    Ok(scan(state_dir)?
        .into_iter()
        .filter_map(|(_, r)| r.ok())
        .collect())
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The directory of run `id` when it holds `file`, or exit 2 saying there
/// is no `what` of such a run and naming the most recent runs (`logs`
/// looks for the log, `summary` and `comment` for the record).
pub(crate) fn find_run(state_dir: &Path, id: &str, file: &str, what: &str) -> Result<PathBuf> {
    let dir = state_dir.join("runs").join(id);
    if crate::config::names::check_run_id(id).is_ok() && dir.join(file).is_file() {
        return Ok(dir);
    }
    let recent: Vec<String> = scan(state_dir)?
        .into_iter()
        .rev()
        .take(10)
        .map(|(id, _)| id)
        .collect();
    Err(crate::exit::Failure::usage(format!(
        "no {what} of a run {id:?} in {}; most recent runs: {}",
        state_dir.display(),
        if recent.is_empty() {
            "none".to_string()
        } else {
            recent.join(", ")
        }
    )))
}
