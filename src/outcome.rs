//! How one test ended, as a type: the test runner decides it, its
//! `report.json` and junit.xml carry its word, and the run record keeps
//! the floor's (`rundir::Floor`). Below the record, like `tier` and
//! `verdict`.

use serde::{Deserialize, Serialize};

/// How one test ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Passed,
    Failed,
    TimedOut,
    /// Started, then terminated because the suite stopped.
    Cancelled,
    /// Never started.
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed-out",
            Outcome::Cancelled => "cancelled",
            Outcome::Skipped => "skipped",
        }
    }

    /// The outcome a word names (the inverse of [`Outcome::as_str`]).
    pub fn parse(text: &str) -> Option<Outcome> {
        [
            Outcome::Passed,
            Outcome::Failed,
            Outcome::TimedOut,
            Outcome::Cancelled,
            Outcome::Skipped,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }

    /// Counts against the verdict.
    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::Failed | Outcome::TimedOut)
    }
}
