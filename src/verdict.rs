//! The verdict of a run (SPEC section 3) as a type: decided by its exit
//! code, kept in the run record by its word (`passed`, `bad-input`, ...),
//! filtered on by `history --verdict`, counted by the metrics and coloured
//! by the timeline.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Every verdict a record can carry. Its words are serde's and clap's
/// (`history --verdict`) kebab-case names, which [`Verdict::as_str`]
/// spells out (a unit test holds the three together).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Passed,
    /// Tests failed (or the floor, or the watch).
    Failed,
    BadInput,
    /// Anything else that went wrong: the harness, the host, the engine.
    Infra,
    TeardownFailed,
    SelfProtect,
    Duplicate,
    /// Stopped by a signal.
    Cancelled,
    /// The run deadline (`--timeout`) passed.
    Deadline,
}

impl Verdict {
    pub const ALL: [Verdict; 9] = [
        Verdict::Passed,
        Verdict::Failed,
        Verdict::BadInput,
        Verdict::Infra,
        Verdict::TeardownFailed,
        Verdict::SelfProtect,
        Verdict::Duplicate,
        Verdict::Cancelled,
        Verdict::Deadline,
    ];

    /// The verdict's word, as records, reports and views write it (and as
    /// serde reads and writes it: the two must agree).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::BadInput => "bad-input",
            Verdict::Infra => "infra",
            Verdict::TeardownFailed => "teardown-failed",
            Verdict::SelfProtect => "self-protect",
            Verdict::Duplicate => "duplicate",
            Verdict::Cancelled => "cancelled",
            Verdict::Deadline => "deadline",
        }
    }

    /// The verdict a word names.
    pub fn parse(text: &str) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|v| v.as_str() == text)
    }

    /// The verdict of a run's exit code (SPEC section 3).
    pub fn of_exit(code: i32) -> Verdict {
        use crate::exit;
        match code {
            exit::OK => Verdict::Passed,
            exit::TESTS_FAILED => Verdict::Failed,
            exit::USAGE => Verdict::BadInput,
            exit::TEARDOWN_FAILED => Verdict::TeardownFailed,
            exit::SELF_PROTECT => Verdict::SelfProtect,
            exit::DUPLICATE_RUN => Verdict::Duplicate,
            exit::SIGHUP | exit::SIGINT | exit::SIGTERM => Verdict::Cancelled,
            exit::DEADLINE => Verdict::Deadline,
            _ => Verdict::Infra,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
