//! STUB: the janitor lands with its own issue.
use crate::config::RunConfig;
use crate::external::Tools;
use anyhow::Result;
use std::path::Path;

/// One sweep after a run (SPEC section 3 step 11). No-op for now.
pub fn sweep_after_run(
    _state_dir: &Path,
    _abra_home: &Path,
    _tools: &Tools,
    _cfg: &RunConfig,
) -> Result<()> {
    Ok(())
}
