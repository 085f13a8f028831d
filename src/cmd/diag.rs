//! The hidden lock diagnostics the tests and the benchmarks drive:
//! `__hold-lock` (hold a lock while a command runs or until stdin closes),
//! `__lock-stress` (rounds of acquire/enter/exit against an O_APPEND
//! oracle file, on either backend) and `__bench-lock`.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cli::{BenchLockArgs, HoldLockArgs, LockStressArgs};
use crate::exit::{self, Failure};
use crate::lock::backend::{self, Attempt, Backend, LockSettings};
use crate::lock::{self, Acquire, Kind, OwnerRecord, TryLock};
use crate::say;

/// `__hold-lock KIND NAME [CMD...]`: see [`HoldLockArgs`].
pub(crate) fn hold_lock(state_dir: &Path, args: HoldLockArgs) -> Result<i32> {
    crate::log::set_tag("hold-lock");
    crate::names::validate_name(args.kind, &args.name)?;
    let run_id = args
        .run_id
        .clone()
        .unwrap_or_else(|| format!("manual-{}", std::process::id()));
    crate::names::validate_name(Kind::Run, &run_id)?;
    let owner = OwnerRecord::for_self(&run_id, args.kind);
    let what = format!("{} lock `{}`", args.kind.as_str(), args.name);
    // An app lock goes through the configured backend; a run lock is
    // always a flock.
    let locks: Box<dyn backend::AppLocks> = match args.kind {
        Kind::App => crate::config::locks::settings_from_process()?.open(state_dir),
        Kind::Run => Box::new(backend::FlockLocks {
            state_dir: state_dir.to_path_buf(),
            kind: Kind::Run,
        }),
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
/// [`LockStressArgs`]. Prints `acquired A busy B absent C` on stdout.
pub(crate) fn lock_stress(state_dir: &Path, args: LockStressArgs) -> Result<i32> {
    crate::log::set_tag("lock-stress");
    crate::names::validate_name(Kind::App, &args.name)?;
    let settings = crate::config::locks::settings_from_process()?;
    if settings.backend == Backend::Swarm {
        return lock_stress_backend(state_dir, &settings, &args);
    }
    let path = lock::lock_path(state_dir, Kind::App, &args.name);
    let mut oracle = open_oracle(&args.oracle)?;
    let pid = std::process::id();
    let owner = OwnerRecord::for_self(&format!("stress-{pid}"), Kind::App);
    let (mut acquired, mut busy, mut absent) = (0u64, 0u64, 0u64);
    for i in 0..args.iterations {
        let held = if args.unlocker {
            match lock::try_lock_existing(&path)? {
                Some(TryLock::Acquired(h)) => Some(h),
                Some(TryLock::Busy(_)) => {
                    busy += 1;
                    None
                }
                None => {
                    absent += 1;
                    None
                }
            }
        } else {
            let wait = lock::Wait {
                deadline: None,
                cancel: None,
                progress_every: Duration::ZERO,
                progress: &mut |_, _| {},
            };
            match lock::acquire(state_dir, Kind::App, &args.name, &owner, wait)? {
                Acquire::Acquired(h) => Some(h),
                Acquire::TimedOut | Acquire::Cancelled => None,
            }
        };
        let Some(held) = held else { continue };
        acquired += 1;
        // One write per line: with O_APPEND each lands whole, in order.
        oracle
            .write_all(format!("enter {pid} {i}\n").as_bytes())
            .context("failed to write to the oracle file")?;
        oracle
            .write_all(format!("exit {pid} {i}\n").as_bytes())
            .context("failed to write to the oracle file")?;
        if args.unlocker || i % 3 == 0 {
            held.remove()?;
        } else {
            drop(held);
        }
    }
    println!("acquired {acquired} busy {busy} absent {absent}");
    Ok(exit::OK)
}

/// `__lock-stress` through the configured backend (the swarm's): waits,
/// holds, writes `enter`/`exit` to the oracle, releases; `--unlocker` is
/// the flock backend's file-removal race and has no meaning here.
fn lock_stress_backend(
    state_dir: &Path,
    settings: &LockSettings,
    args: &LockStressArgs,
) -> Result<i32> {
    if args.unlocker {
        return Err(Failure::usage(
            "__lock-stress --unlocker races lock-file removal: only with CCCI_LOCK_BACKEND=flock",
        ));
    }
    let locks = settings.open(state_dir);
    let mut oracle = open_oracle(&args.oracle)?;
    let pid = std::process::id();
    let owner = OwnerRecord::for_self(&format!("stress-{pid}"), Kind::App);
    let (mut acquired, mut waited) = (0u64, 0u64);
    for i in 0..args.iterations {
        let mut was_busy = false;
        let wait = lock::Wait {
            deadline: None,
            cancel: None,
            progress_every: Duration::ZERO,
            progress: &mut |_, _| was_busy = true,
        };
        let on_lost = Box::new(|why: &str| say!("lost the lock: {why}"));
        let held = match locks.acquire(&args.name, &owner, wait, on_lost)? {
            backend::Acquired::Acquired(h) => h,
            _ => continue,
        };
        acquired += 1;
        waited += u64::from(was_busy);
        let host = &settings.host_id;
        // Entering is a mutating step: only with the lease standing.
        held.may_mutate()
            .with_context(|| format!("round {i}: acquired, but may not enter"))?;
        write_line(&mut oracle, &format!("enter {host}:{pid} {i}"))?;
        // Inside, the holder acts as a run does: every step first asks
        // whether it may still mutate. Once refused (the lease lost or
        // nearly spent) it leaves at once, saying so in the oracle.
        let until = Instant::now() + args.hold;
        while Instant::now() < until {
            std::thread::sleep(HOLD_STEP.min(until.saturating_duration_since(Instant::now())));
            if let Err(e) = held.may_mutate() {
                write_line(&mut oracle, &format!("exit {host}:{pid} {i} lost"))?;
                return Err(e.context(format!("round {i}: left the lock while inside")));
            }
        }
        // The object must still be ours as we leave: a holder that was
        // taken over while inside fails loudly, never exits 0.
        held.confirm_held()
            .with_context(|| format!("round {i}: the lock was not ours at exit"))?;
        write_line(&mut oracle, &format!("exit {host}:{pid} {i}"))?;
        if let Some(why) = held.lost() {
            return Err(Failure::infra(format!(
                "round {i}: the lock was lost while held: {why}"
            )));
        }
        held.release()?;
    }
    println!("acquired {acquired} waited {waited}");
    Ok(exit::OK)
}

/// How often a `__lock-stress` holder inside asks whether it may still
/// mutate (a run asks before each step; its steps are seconds apart).
const HOLD_STEP: Duration = Duration::from_millis(20);

/// One oracle line of the swarm backend, with the wall-clock Unix
/// milliseconds it was written at as its last field (the tests' timing
/// tables; the order of the lines is the kernel's O_APPEND order).
fn write_line(oracle: &mut std::fs::File, line: &str) -> Result<()> {
    let ms = crate::lock::swarm::now_ms();
    oracle
        .write_all(format!("{line} @{ms}\n").as_bytes())
        .context("failed to write to the oracle file")
}

/// `__bench-lock N`: N rounds of try-acquire + release of one uncontended
/// app lock (open, flock, inode re-check, owner record, truncate, close);
/// prints the median in nanoseconds.
pub(crate) fn bench_lock(state_dir: &Path, args: BenchLockArgs) -> Result<i32> {
    let name = args.name.as_deref().unwrap_or("bench.lock.invalid");
    let owner = OwnerRecord::for_self("bench", Kind::App);
    let locks = crate::config::locks::settings_from_process()?.open(state_dir);
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

/// The oracle file every stress process appends its `enter`/`exit` lines
/// to: O_APPEND, so lines of several processes never overwrite each other
/// and their order is the order the kernel wrote them in.
fn open_oracle(path: &Path) -> Result<std::fs::File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("failed to open oracle file {}", path.display()))
}
