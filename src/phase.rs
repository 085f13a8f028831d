//! The phases of a run (SPEC section 3) as a type: the lifecycle sets one
//! at a time, and the run record keeps it by its name (`fetch`,
//! `install-converge`, `test-upgrade`, ...), which the status, history,
//! timeline and JUnit views show. Below the record, which is below the
//! lifecycle that sets it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::tier::Tier;

/// One phase of a run, in the order SPEC section 3 fixes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// A new record's phase, until the first real one begins.
    #[default]
    Started,
    Fetch,
    Checks,
    Prepare,
    Lock,
    Preclean,
    /// The install tier's deploy (of the base release, or of the ref).
    Install,
    /// The upgrade tier's chaos deploy of the ref under test.
    Upgrade,
    Backup,
    Restore,
    /// The convergence wait after a tier's deploy.
    Converge(Tier),
    /// A tier's tests.
    Test(Tier),
    Teardown,
    Cleanup,
    /// Not a span of its own: it ends the last one.
    Finished,
    /// Not a phase a run enters: the janitor's mark on the record of a run
    /// that died without finishing (the phase it died in becomes its
    /// `failed_phase`).
    Abandoned,
}

impl Phase {
    /// The phases whose name is one word: all but a tier's convergence
    /// and tests.
    const ONE_WORD: [Phase; 14] = [
        Phase::Started,
        Phase::Fetch,
        Phase::Checks,
        Phase::Prepare,
        Phase::Lock,
        Phase::Preclean,
        Phase::Install,
        Phase::Upgrade,
        Phase::Backup,
        Phase::Restore,
        Phase::Teardown,
        Phase::Cleanup,
        Phase::Finished,
        Phase::Abandoned,
    ];

    /// The name of a one-word phase; None for a tier's convergence and
    /// tests, whose names carry the tier.
    fn word(self) -> Option<&'static str> {
        Some(match self {
            Phase::Started => "started",
            Phase::Fetch => "fetch",
            Phase::Checks => "checks",
            Phase::Prepare => "prepare",
            Phase::Lock => "lock",
            Phase::Preclean => "preclean",
            Phase::Install => "install",
            Phase::Upgrade => "upgrade",
            Phase::Backup => "backup",
            Phase::Restore => "restore",
            Phase::Teardown => "teardown",
            Phase::Cleanup => "cleanup",
            Phase::Finished => "finished",
            Phase::Abandoned => "abandoned",
            Phase::Converge(_) | Phase::Test(_) => return None,
        })
    }

    /// The phase a name in a record stands for (the inverse of `Display`).
    pub fn parse(text: &str) -> Option<Phase> {
        if let Some(tier) = text.strip_prefix("test-") {
            return Tier::parse(tier).map(Phase::Test);
        }
        if let Some(tier) = text.strip_suffix("-converge") {
            return Tier::parse(tier).map(Phase::Converge);
        }
        Phase::ONE_WORD.into_iter().find(|p| p.word() == Some(text))
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Phase::Converge(t) => write!(f, "{t}-converge"),
            Phase::Test(t) => write!(f, "test-{t}"),
            one_word => f.write_str(one_word.word().unwrap_or_default()),
        }
    }
}

/// In a record, a phase is its name.
impl Serialize for Phase {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Phase {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Phase, D::Error> {
        let text = String::deserialize(d)?;
        Phase::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown phase {text:?}")))
    }
}
