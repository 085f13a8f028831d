//! One top-level function per command; `main` maps their results to exit codes.

use std::process::Command;

use anyhow::Result;
use nix::unistd::Pid;

use crate::cli::{self, Cli};
use crate::lifetime::{self, WrapOptions};

/// Runs the parsed command line; returns the process exit code.
pub fn dispatch(cli: Cli, start_ppid: Pid) -> Result<i32> {
    match cli.command {
        cli::Command::Exec(args) => exec(args, start_ppid),
        cli::Command::Locks(args) => crate::lockcmd::locks(&cli.state_dir, args),
        cli::Command::Unlock(args) => crate::lockcmd::unlock(&cli.state_dir, args),
        cli::Command::HoldLock(args) => crate::lockcmd::hold_lock(&cli.state_dir, args),
        cli::Command::LockStress(args) => crate::lockcmd::lock_stress(&cli.state_dir, args),
        cli::Command::BenchLock(args) => crate::lockcmd::bench_lock(&cli.state_dir, args),
        other => Err(crate::exit::Failure::usage(format!(
            "command {other:?} is not implemented yet"
        ))),
    }
}

/// `cc-ci-run exec -- CMD...`: the guarded replacement for
/// `setsid CMD & PID=$!; trap 'kill -TERM -- -$PID' TERM EXIT; wait $PID`.
pub fn exec(args: cli::ExecArgs, start_ppid: Pid) -> Result<i32> {
    crate::log::set_tag("exec");
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| crate::exit::Failure::usage("exec: CMD is required after --"))?;
    let mut cmd = Command::new(program);
    cmd.args(rest);
    lifetime::wrap(
        cmd,
        &WrapOptions {
            start_ppid,
            kill_after: args.grace,
            grace: args.grace,
            timeout: args.timeout,
        },
    )
}
