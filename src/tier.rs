//! The tiers of a run (SPEC section 3, step 8) as a type: a test's header
//! names the tiers it runs in, a run tests them in order, and the run
//! record keeps the ones it tested by these names. Below the record (and so
//! below `run` and `testrun`, which both read and write it).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The phase of a `run` after which a test runs (SPEC section 3, step 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Install,
    Upgrade,
    /// After `abra app backup create`, before `abra app restore`: tests
    /// that change or delete data, so the restore has something to prove.
    Backup,
    Restore,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Install, Tier::Upgrade, Tier::Backup, Tier::Restore];

    /// The tiers' names, for messages (`install, upgrade, backup, restore`).
    pub(crate) const NAMES: &'static str = "install, upgrade, backup, restore";

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Tier::Install => "install",
            Tier::Upgrade => "upgrade",
            Tier::Backup => "backup",
            Tier::Restore => "restore",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
