//! `cc-ci-run janitor`: one sweep, or a sweep every interval with
//! `--watch` (SPEC section 5); [`crate::janitor`] decides and reaps.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use crate::cli::JanitorArgs;
use crate::config::{self, Env};
use crate::exit;
use crate::janitor::{sweep, Settings, Summary};
use crate::say;

/// `cc-ci-run janitor`.
pub(crate) fn janitor(args: JanitorArgs, state_dir: &Path, env: &Env) -> Result<i32> {
    crate::log::set_tag("janitor");
    if !config::janitor::enabled(env)? {
        say!("CCCI_JANITOR=off: nothing to do");
        return Ok(exit::OK);
    }
    config::check_state_dir(state_dir)?;
    let s = Settings::from_env(
        state_dir,
        &args.server,
        args.teardown_timeout,
        args.dry_run,
        env,
    )?;
    let funnel = crate::lifetime::install_harness_guards(None)?;
    let emit = |sum: &Summary| {
        if args.json {
            if let Ok(text) = serde_json::to_string(sum) {
                use std::io::Write;
                // A closed pipe ends the report quietly (as `ls | head`).
                let _ = writeln!(std::io::stdout().lock(), "{text}");
            }
        }
    };
    if !args.watch {
        let sum = sweep(&s, Some(funnel.latch()))?;
        emit(&sum);
        if args.check && !sum.flagged.is_empty() {
            return Ok(exit::TESTS_FAILED);
        }
        if !sum.failed.is_empty() || !sum.bad_entries.is_empty() {
            return Ok(exit::INFRA);
        }
        return Ok(funnel.requested().unwrap_or(exit::OK));
    }
    say!(
        "janitor: sweeping every {}",
        crate::units::human(args.interval)
    );
    loop {
        // Each tick says a full disk (and each file it could not write)
        // once, not once for the life of the watch.
        crate::log::forget_write_failures();
        match sweep(&s, Some(funnel.latch())) {
            Ok(sum) => emit(&sum),
            Err(e) => say!("janitor: sweep failed, trying again next tick: {e:#}"),
        }
        if funnel.latch().wait_until(Instant::now() + args.interval) {
            say!("janitor: stopped cleanly");
            return Ok(exit::OK);
        }
    }
}
