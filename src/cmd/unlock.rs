//! `cc-ci-run unlock`: removes a free lock, or with `--terminate` stops
//! its live holder on this host first, through the app-domain lock's
//! backend ([`crate::lock::backend::AppLocks::unlock`]): a lock file is
//! removed under its flock, because only a holder may unlink one (see
//! [`crate::lock::flock`]); a swarm lease by its ID once the engine's
//! clock says it is dead.

use std::path::Path;

use anyhow::Result;

use crate::cli::UnlockArgs;
use crate::lock::backend::Unlock;

/// `cc-ci-run unlock NAME [--terminate [--wait D]]`.
pub(crate) fn unlock(state_dir: &Path, args: UnlockArgs) -> Result<i32> {
    crate::log::set_tag("unlock");
    let locks = crate::lock::settings_from_process()?.open(state_dir);
    locks.unlock(&Unlock {
        name: &args.name,
        kind: args.kind,
        terminate: args.terminate,
        wait: args.wait,
    })
}
