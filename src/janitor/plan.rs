//! The janitor's decisions (pure): which apps are candidates, what to do
//! with each given its lock probe, which locks are flagged as too old, and
//! which run records are past retention.

use std::time::{Duration, SystemTime};

pub use crate::config::janitor::Gate;

/// The apps whose domain matches the gate (each once). Nothing else is
/// looked at further, so no lock file is ever created for a warm or
/// canonical app.
pub fn matching<'a>(apps: &'a [String], gate: &Gate) -> Vec<&'a str> {
    let mut seen = std::collections::HashSet::new();
    apps.iter()
        .map(String::as_str)
        .filter(|a| gate.matches(a))
        .filter(|a| seen.insert(*a))
        .collect()
}

/// What an app's env file says of its creator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mark {
    /// It carries the marker `run` writes at `app new`.
    Marked,
    /// It does not: not created by cc-ci-run.
    Unmarked,
    /// It could not be read (why): a bad entry, neither probed nor
    /// reported as unmarked.
    Unreadable(String),
}

/// The matching apps, split by what their env files say.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Candidates<'a> {
    /// Matching and marked: probed, reaped when orphaned.
    pub marked: Vec<&'a str>,
    /// Matching without the marker: reported, never probed.
    pub unmarked: Vec<&'a str>,
    /// Matching, env file unreadable (domain, why): named, skipped.
    pub unreadable: Vec<(&'a str, String)>,
}

/// The candidates (SPEC section 5): apps matching the gate *and* carrying
/// the marker `run` writes at `app new` (`mark` reads it, only for
/// matching apps). The others that match are reported, never probed.
pub fn candidates<'a>(
    apps: &'a [String],
    gate: &Gate,
    mut mark: impl FnMut(&str) -> Mark,
) -> Candidates<'a> {
    let mut out = Candidates::default();
    for app in matching(apps, gate) {
        match mark(app) {
            Mark::Marked => out.marked.push(app),
            Mark::Unmarked => out.unmarked.push(app),
            Mark::Unreadable(why) => out.unreadable.push((app, why)),
        }
    }
    out
}

/// What a lock probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    /// A live run holds the lock; `age` since it was taken.
    Held { age: Option<Duration> },
    /// We acquired it: the owner is dead.
    Acquired,
}

/// What the janitor does with a candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// A live run owns it: hands off. `flag` when held past the max age.
    SkipLive { flag: bool },
    /// Orphan: tear down while holding the lock.
    Reap,
    /// Orphan, but --dry-run: report only.
    WouldReap,
}

pub(crate) fn decide(probe: Probe, max_age: Duration, dry_run: bool) -> Decision {
    match probe {
        Probe::Held { age } => Decision::SkipLive {
            flag: age.is_some_and(|a| a > max_age),
        },
        Probe::Acquired if dry_run => Decision::WouldReap,
        Probe::Acquired => Decision::Reap,
    }
}

/// Whether a finished record written at `mtime` is past retention at `now`.
pub(crate) fn past_retention(mtime: SystemTime, now: SystemTime, retention: Duration) -> bool {
    now.duration_since(mtime).is_ok_and(|age| age > retention)
}
