//! Self-protection (`--self-protect`): the runner watches the host's CPU and
//! memory and stops the suite cleanly (checkpoint, terminate running tests,
//! reports, exit 42) before a runaway test takes the shared CI host down
//! with every other build on it.
//!
//! The numbers come from `/proc/stat` and `/proc/meminfo`, read from the
//! directory named by `CCCI_SELF_PROTECT_PROC_DIR` when set (tests point it
//! at fixture files). The decision is pure ([`judge`]); [`Sampler`] only
//! reads the files and keeps the previous CPU reading.
//!
//! Memory trips at once: memory runs out fast and the OOM killer picks its
//! own victim. CPU trips only when it stays past the limit for
//! [`CPU_SUSTAIN`] consecutive readings taken at least [`CPU_INTERVAL`]
//! apart, because a busy burst (a compile, a parallel test) is normal.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the fixture `stat` and `meminfo` come from instead of /proc.
pub(crate) const PROC_DIR_ENV: &str = "CCCI_SELF_PROTECT_PROC_DIR";
/// Readings of CPU past the limit in a row that trip.
pub const CPU_SUSTAIN: u32 = 3;
/// Least time between two CPU readings.
pub(crate) const CPU_INTERVAL: Duration = Duration::from_secs(1);

/// Aggregate CPU time counters (jiffies) from the `cpu` line of /proc/stat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuTimes {
    pub busy: u64,
    pub total: u64,
}

/// Parses the first (`cpu `) line of /proc/stat. Idle is `idle + iowait`;
/// `guest` and `guest_nice` are already counted in `user` and `nice`.
pub fn parse_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 4 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        busy: total.saturating_sub(idle),
        total,
    })
}

/// Busy percentage between two readings; None when no time passed.
pub fn cpu_percent(prev: CpuTimes, cur: CpuTimes) -> Option<f64> {
    let total = cur.total.checked_sub(prev.total)?;
    let busy = cur.busy.checked_sub(prev.busy)?;
    if total == 0 {
        return None;
    }
    Some(100.0 * busy as f64 / total as f64)
}

/// Used memory percentage from /proc/meminfo: 100 × (1 − MemAvailable / MemTotal).
pub fn mem_percent(meminfo: &str) -> Option<f64> {
    let field = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].split_whitespace().next()?.parse().ok()
    };
    let total = field("MemTotal:")?;
    let avail = field("MemAvailable:")?;
    if total == 0 {
        return None;
    }
    Some(100.0 * (1.0 - avail.min(total) as f64 / total as f64))
}

/// The thresholds, in percent of the host.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub cpu: f64,
    pub mem: f64,
}

/// The outcome of one look at the host.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Fine,
    /// Past a threshold: why, in words for the log and the report.
    Trip(String),
}

/// Pure decision: `cpu` is this reading's busy percentage (None: no new
/// reading), `streak` the number of consecutive readings past the limit
/// before it. Returns the verdict and the new streak.
pub fn judge(cpu: Option<f64>, mem: Option<f64>, streak: u32, limits: Limits) -> (Verdict, u32) {
    if let Some(m) = mem {
        if m >= limits.mem {
            return (
                Verdict::Trip(format!(
                    "host memory {m:.1}% used, limit {:.1}%",
                    limits.mem
                )),
                streak,
            );
        }
    }
    let streak = match cpu {
        Some(c) if c >= limits.cpu => streak + 1,
        Some(_) => 0,
        None => streak,
    };
    if streak >= CPU_SUSTAIN {
        let c = cpu.unwrap_or(limits.cpu);
        return (
            Verdict::Trip(format!(
                "host CPU {c:.1}% busy for {streak} readings in a row, limit {:.1}%",
                limits.cpu
            )),
            streak,
        );
    }
    (Verdict::Fine, streak)
}

/// Reads the host's numbers and keeps the state between readings.
#[derive(Debug)]
pub(crate) struct Sampler {
    dir: PathBuf,
    limits: Limits,
    prev: Option<(Instant, CpuTimes)>,
    streak: u32,
    warned: bool,
}

impl Sampler {
    /// `dir` is where `stat` and `meminfo` are (normally /proc).
    pub(crate) fn new(dir: &Path, limits: Limits) -> Sampler {
        Sampler {
            dir: dir.to_path_buf(),
            limits,
            prev: None,
            streak: 0,
            warned: false,
        }
    }

    /// Takes a reading (CPU only if [`CPU_INTERVAL`] has passed since the
    /// last one) and judges it. Unreadable files never trip: they are logged
    /// once.
    pub(crate) fn check(&mut self) -> Verdict {
        let now = Instant::now();
        let mem = match std::fs::read_to_string(self.dir.join("meminfo")) {
            Ok(t) => mem_percent(&t),
            Err(e) => {
                self.warn(&format!("meminfo: {e}"));
                None
            }
        };
        let due = self
            .prev
            .is_none_or(|(t, _)| now.duration_since(t) >= CPU_INTERVAL);
        let mut cpu = None;
        if due {
            match std::fs::read_to_string(self.dir.join("stat")).map(|t| parse_stat(&t)) {
                Ok(Some(cur)) => {
                    cpu = self.prev.and_then(|(_, p)| cpu_percent(p, cur));
                    self.prev = Some((now, cur));
                }
                Ok(None) => self.warn("stat: no `cpu` line"),
                Err(e) => self.warn(&format!("stat: {e}")),
            }
        }
        let (verdict, streak) = judge(cpu, mem, self.streak, self.limits);
        self.streak = streak;
        verdict
    }

    fn warn(&mut self, what: &str) {
        if !self.warned {
            self.warned = true;
            crate::say!(
                "self-protection cannot read {} ({what}); it will not trip on it",
                self.dir.display()
            );
        }
    }
}
