//! What an operator reads of the host besides the records themselves,
//! rewritten after every run and janitor sweep: the Prometheus text file
//! (`metrics`) and the timeline page (`timeline`). Both are pure renderers
//! over the run records plus one atomic file write; neither takes a lock a
//! run waits on.

pub mod metrics;
pub mod summary;
pub mod timeline;

use std::path::PathBuf;

use anyhow::Result;

use crate::config::Env;

/// Where a run or a sweep rewrites the operator's views, from
/// `CCCI_METRICS_FILE` and `CCCI_TIMELINE_FILE`: read and checked once,
/// before anything is touched (a bad value is exit 2 naming it), and
/// handed to whoever writes them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Outputs {
    pub metrics: Option<PathBuf>,
    pub timeline: Option<PathBuf>,
}

impl Outputs {
    pub(crate) fn from_env(env: &Env) -> Result<Outputs> {
        Ok(Outputs {
            metrics: metrics::file_from_env(env)?,
            timeline: timeline::file_from_env(env)?,
        })
    }
}
