//! The phases of a run (SPEC section 3) as a type: the lifecycle sets one
//! at a time, and the record keeps its name (`fetch`, `install-converge`,
//! `test-upgrade`, ...), which the status, history, timeline and JUnit
//! views read back as text.

use std::fmt;

use crate::testrun::meta::Tier;

/// One phase of a run, in the order SPEC section 3 fixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
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
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Started => f.write_str("started"),
            Phase::Fetch => f.write_str("fetch"),
            Phase::Checks => f.write_str("checks"),
            Phase::Prepare => f.write_str("prepare"),
            Phase::Lock => f.write_str("lock"),
            Phase::Preclean => f.write_str("preclean"),
            Phase::Install => f.write_str("install"),
            Phase::Upgrade => f.write_str("upgrade"),
            Phase::Backup => f.write_str("backup"),
            Phase::Restore => f.write_str("restore"),
            Phase::Converge(t) => write!(f, "{t}-converge"),
            Phase::Test(t) => write!(f, "test-{t}"),
            Phase::Teardown => f.write_str("teardown"),
            Phase::Cleanup => f.write_str("cleanup"),
            Phase::Finished => f.write_str("finished"),
        }
    }
}
