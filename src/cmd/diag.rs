//! The hidden lock diagnostics the tests and the benchmarks drive:
//! `__hold-lock` (hold a lock while a command runs or until stdin closes),
//! `__lock-stress` (rounds of acquire/enter/exit against an O_APPEND
//! oracle file, on either backend) and `__bench-lock`.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cli::{BenchLockArgs, HoldLockArgs, LockStressArgs};
use crate::exit::{self, Failure};
use crate::lock::backend::{self, Attempt, Stress};
use crate::lock::{self, Kind, OwnerRecord};
use crate::say;

/// `__hold-lock KIND NAME [CMD...]`: see [`HoldLockArgs`].
pub(crate) fn hold_lock(state_dir: &Path, args: HoldLockArgs) -> Result<i32> {
    crate::log::set_tag("hold-lock");
    crate::config::names::validate_name(args.kind, &args.name)?;
    let run_id = args
        .run_id
        .clone()
        .unwrap_or_else(|| format!("manual-{}", std::process::id()));
    crate::config::names::validate_name(Kind::Run, &run_id)?;
    let owner = OwnerRecord::for_self(&run_id, args.kind);
    let what = format!("{} lock `{}`", args.kind.as_str(), args.name);
    // An app lock goes through the configured backend; a run lock is
    // always a flock.
    let locks = match args.kind {
        Kind::App => crate::lock::settings_from_process()?.open(state_dir),
        Kind::Run => crate::lock::run_locks(state_dir),
    };
    hold(locks.as_ref(), &args, &owner, &what)
}

/// Starts CMD (if any) with plain std::process::Command, which closes
/// nothing for us: the child shows whether our lock descriptors really are
/// close-on-exec. Prints `child PID`.
fn start_child(command: &[String], out: &mut impl Write) -> Result<Option<std::process::Child>> {
    let Some((program, rest)) = command.split_first() else {
        return Ok(None);
    };
    let child = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("failed to start {program}"))?;
    writeln!(out, "child {}", child.id()).context("failed to write to stdout")?;
    out.flush().context("failed to write to stdout")?;
    Ok(Some(child))
}

/// Holds until stdin closes (or a signal ends us: the kernel releases a
/// flock, a swarm lease expires), then ends the child.
fn hold_until_stdin_closes(child: Option<&mut std::process::Child>) {
    let mut sink = Vec::new();
    let _ = std::io::stdin().lock().read_to_end(&mut sink);
    if let Some(c) = child {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Takes the lock as a run does (or tries once), prints `held`, holds it
/// until stdin closes.
fn hold(
    locks: &dyn backend::AppLocks,
    args: &HoldLockArgs,
    owner: &OwnerRecord,
    what: &str,
) -> Result<i32> {
    let shown = what.to_string();
    let on_lost = move || -> backend::OnLost {
        let shown = shown.clone();
        Box::new(move |why: &str| say!("lost {shown}: {why}"))
    };
    let held = if args.try_only {
        match locks.try_acquire(&args.name, owner, on_lost())? {
            Attempt::Acquired(h) => h,
            Attempt::Busy(b) => {
                return Err(Failure::with_code(
                    exit::DUPLICATE_RUN,
                    format!(
                        "{what} is held by {}",
                        lock::describe_owner(b.owner.as_ref())
                    ),
                ))
            }
        }
    } else {
        let deadline = args.wait.map(|w| Instant::now() + w);
        let mut progress = |holder: Option<&OwnerRecord>, waited: Duration| {
            say!(
                "waiting for {what} ({} so far): held by {}",
                crate::units::human(waited),
                lock::describe_owner(holder)
            );
        };
        let wait = lock::Wait {
            deadline,
            cancel: None,
            progress_every: args.progress,
            progress: &mut progress,
        };
        match locks.acquire(&args.name, owner, wait, on_lost())? {
            backend::Acquired::Acquired(h) => h,
            _ => {
                return Err(Failure::with_code(
                    exit::TESTS_FAILED,
                    format!("gave up waiting for {what}"),
                ))
            }
        }
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "held").context("failed to write to stdout")?;
    out.flush().context("failed to write to stdout")?;
    let mut child = start_child(&args.command, &mut out)?;
    drop(out);
    hold_until_stdin_closes(child.as_mut());
    let lost = held.lost();
    held.release()?;
    match lost {
        Some(why) => say!("{what} had been lost ({why})"),
        None => say!("released {what}"),
    }
    Ok(exit::OK)
}

/// `__lock-stress NAME --iterations N --oracle FILE [--unlocker]`: see
/// [`LockStressArgs`]. Prints the backend's summary on stdout (flock:
/// `acquired A busy B absent C`; swarm: `acquired A waited W`).
pub(crate) fn lock_stress(state_dir: &Path, args: LockStressArgs) -> Result<i32> {
    crate::log::set_tag("lock-stress");
    crate::config::names::validate_name(Kind::App, &args.name)?;
    let locks = crate::lock::settings_from_process()?.open(state_dir);
    let summary = locks.stress(&Stress {
        name: &args.name,
        iterations: args.iterations,
        oracle: &args.oracle,
        unlocker: args.unlocker,
        hold: args.hold,
    })?;
    println!("{summary}");
    Ok(exit::OK)
}

/// `__bench-lock N`: N rounds of try-acquire + release of one uncontended
/// app lock (open, flock, inode re-check, owner record, truncate, close);
/// prints the median in nanoseconds.
pub(crate) fn bench_lock(state_dir: &Path, args: BenchLockArgs) -> Result<i32> {
    let name = args.name.as_deref().unwrap_or("bench.lock.invalid");
    let owner = OwnerRecord::for_self("bench", Kind::App);
    let locks = crate::lock::settings_from_process()?.open(state_dir);
    let mut samples = Vec::with_capacity(args.iterations.max(1));
    for _ in 0..args.iterations.max(1) {
        let t = Instant::now();
        match locks.try_acquire(name, &owner, Box::new(|_: &str| {}))? {
            Attempt::Acquired(held) => held.release()?,
            Attempt::Busy(_) => {
                return Err(Failure::infra(format!(
                    "the benchmark lock `{name}` is held by someone else"
                )))
            }
        }
        samples.push(t.elapsed().as_nanos());
    }
    samples.sort_unstable();
    println!("{}", samples[samples.len() / 2]);
    Ok(exit::OK)
}
