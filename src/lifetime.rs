//! The wrapper/harness split of SPEC section 2, the harness's lifetime
//! guards, and the signal funnel.
//!
//! The wrapper is what Drone's `/bin/sh` started. Drone cancels a step by
//! SIGKILLing that `sh` alone, so the wrapper sets PDEATHSIG(SIGTERM) to turn
//! its parent's death into a signal it can act on, and re-checks its parent
//! because the parent may have died before the flag was set. The harness (or
//! the `exec` command) runs in a new session so that a kill of the step's
//! process group does not reach it; the wrapper forwards SIGTERM to that
//! session's process group, every time a signal comes (a second signal is
//! forwarded again, never lost), and exits with the harness's code.
//!
//! The harness installs PDEATHSIG, re-checks that its parent is the wrapper,
//! and installs the funnel before any other work. The funnel turns the first
//! SIGTERM, SIGINT, SIGHUP or SIGALRM (the run deadline) into a shutdown
//! request with the exit code 128+signal, and sets a latch that every
//! interruptible wait polls. Once teardown has begun, signals are logged and
//! ignored: an aborted teardown leaks an app on a shared swarm.

use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;
use signal_hook::consts::{SIGALRM, SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::say;
use crate::sys::kill::{Escalation, Target};
use crate::sys::latch::Latch;
use crate::sys::spawn::Isolation;
use crate::sys::spec::Spec;
use crate::sys::{kill, spawn};

/// The harness's signal funnel: the first shutdown request and the teardown
/// state. One per process.
#[derive(Debug)]
pub(crate) struct Funnel {
    code: AtomicI32,
    teardown: AtomicBool,
    latch: Latch,
}

static FUNNEL: OnceLock<Funnel> = OnceLock::new();

impl Funnel {
    /// Requests shutdown with `code` unless one was already requested.
    /// Returns true when this call was the first request.
    pub(crate) fn request(&self, code: i32, why: &str) -> bool {
        if self.teardown.load(Ordering::SeqCst) {
            say!("{why}: ignored, teardown is under way and is not interrupted");
            return false;
        }
        match self
            .code
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => {
                // The latch first: every waiter wakes now, not after a log
                // line has reached a slow stderr pipe and the log file.
                self.latch.set();
                say!("{why}: stopping the current phase and tearing down (exit {code})");
                true
            }
            Err(first) => {
                say!("{why}: shutdown already requested (exit {first}), teardown follows");
                false
            }
        }
    }

    /// The exit code of the first shutdown request, if any.
    pub(crate) fn requested(&self) -> Option<i32> {
        match self.code.load(Ordering::SeqCst) {
            0 => None,
            c => Some(c),
        }
    }

    /// The latch that interruptible waits poll; set on the first request.
    pub(crate) fn latch(&self) -> &Latch {
        &self.latch
    }

    /// From now on, signals are logged and ignored.
    pub(crate) fn begin_teardown(&self) {
        self.teardown.store(true, Ordering::SeqCst);
    }

    fn on_signal(&self, sig: i32) {
        let name = signal_name(sig);
        let why = if sig == SIGALRM {
            "run deadline reached (SIGALRM)".to_string()
        } else {
            format!("received {name}")
        };
        self.request(crate::exit::for_signal(sig), &why);
    }
}

/// The process's funnel, once the guards are installed.
pub(crate) fn funnel() -> Option<&'static Funnel> {
    FUNNEL.get()
}

fn signal_name(sig: i32) -> String {
    Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

fn block(signals: &[Signal]) -> Result<SigSet> {
    let mut set = SigSet::empty();
    for s in signals {
        set.add(*s);
    }
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .context("failed to block signals")?;
    Ok(set)
}

fn unblock(set: &SigSet) -> Result<()> {
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(set), None)
        .context("failed to unblock signals")
}

/// The harness's very first act (SPEC section 2): PDEATHSIG, the parent
/// re-check, the signal funnel. `expected_parent` is the wrapper's pid (None
/// for commands that run without a wrapper, such as `test`).
///
/// The funnel's signals are blocked for the duration, so a SIGTERM that
/// PDEATHSIG delivers between the prctl and the handler's installation stays
/// pending and reaches the funnel instead of killing us by default action.
pub(crate) fn install_harness_guards(expected_parent: Option<Pid>) -> Result<&'static Funnel> {
    let funnel_signals = [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGALRM,
    ];
    let blocked = block(&funnel_signals)?;
    spawn::set_parent_death_signal()?;
    let orphaned = expected_parent.filter(|p| nix::unistd::getppid() != *p);
    spawn::become_subreaper()?;
    let funnel = FUNNEL.get_or_init(|| Funnel {
        code: AtomicI32::new(0),
        teardown: AtomicBool::new(false),
        // A pipe can only fail to open when out of descriptors; a funnel
        // without a pollable latch would still work through `requested`.
        latch: Latch::new().unwrap_or_else(|e| {
            say!("warning: {e:#}");
            std::process::exit(crate::exit::INFRA)
        }),
    });
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGALRM])
        .context("failed to install the signal funnel")?;
    std::thread::Builder::new()
        .name("signal-funnel".into())
        .spawn(move || {
            for sig in signals.forever() {
                if let Some(f) = FUNNEL.get() {
                    f.on_signal(sig);
                }
            }
        })
        .context("failed to start the signal funnel thread")?;
    unblock(&blocked)?;
    if let Some(parent) = orphaned {
        funnel.request(
            crate::exit::SIGTERM,
            &format!("parent {parent} (the wrapper) was already gone at start"),
        );
    }
    Ok(funnel)
}

/// Arms the run deadline: SIGALRM after `after`, which the funnel turns into
/// a shutdown request with exit code 142.
pub(crate) fn arm_deadline(after: Duration) -> Result<()> {
    let it = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: after.as_secs() as libc::time_t,
            tv_usec: after
                .subsec_micros()
                .max(if after.is_zero() { 1 } else { 0 }) as libc::suseconds_t,
        },
    };
    // SAFETY: valid pointer to a local; a null old value is allowed.
    let r = unsafe { libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error())
            .context("setitimer for the run deadline failed");
    }
    Ok(())
}

/// Disarms the run deadline (teardown has its own bound).
pub(crate) fn disarm_deadline() -> Result<()> {
    // SAFETY: a zeroed itimerval is valid and disarms the timer.
    let it: libc::itimerval = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a local; a null old value is allowed.
    let r = unsafe { libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error())
            .context("setitimer to disarm the run deadline failed");
    }
    Ok(())
}

/// What the wrapper does.
#[derive(Clone, Debug)]
pub(crate) struct WrapOptions {
    /// The parent pid read first thing in `main`, before any other work.
    pub start_ppid: Pid,
    /// After SIGTERM has been forwarded, how long the child's group has
    /// before SIGKILL (for `run`: the harness's whole teardown bound).
    pub kill_after: Duration,
    /// The grace period of the end-of-life sweep of leftover descendants.
    pub grace: Duration,
    /// `exec --timeout`: SIGTERM to the child's group at the deadline, exit 142.
    pub timeout: Option<Duration>,
}

/// Runs `cmd` as the wrapper of SPEC section 2 and returns the exit code.
///
/// The wrapper's signals are taken from a signalfd, polled together with
/// the child's pidfd, on the one thread: no handler, no signal thread, no
/// channel. They stay blocked for the wrapper's whole life (a signal sent
/// at any point, even before the child exists, waits in the signalfd), and
/// the child gets the mask the wrapper started with back before exec.
pub(crate) fn wrap(cmd: Command, opts: &WrapOptions) -> Result<i32> {
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut wrapper_signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        wrapper_signals.add(s);
    }
    let mut started_mask = SigSet::empty();
    // Blocked before PDEATHSIG is set: its SIGTERM, if the parent dies at
    // once, waits in the signalfd instead of ending us by default action.
    nix::sys::signal::pthread_sigmask(
        SigmaskHow::SIG_BLOCK,
        Some(&wrapper_signals),
        Some(&mut started_mask),
    )
    .context("failed to block the wrapper's signals")?;
    spawn::set_parent_death_signal()?;
    let parent_gone = parent_gone_at_start(opts.start_ppid);
    spawn::become_subreaper()?;
    let signals = SignalFd::with_flags(
        &wrapper_signals,
        SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
    )
    .context("failed to open the wrapper's signalfd")?;
    // The command gets the mask the wrapper started with back, not ours
    // with its three signals blocked for the signalfd.
    let mut spec = Spec::from_command(&cmd, Isolation::Session);
    spec.sigmask(started_mask);
    let spawned = spawn::spawn(&spec);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let code = spawn_error_code(&e);
            say!("{e:#}");
            return Ok(code);
        }
    };
    let started = Instant::now();
    let deadline = opts.timeout.map(|t| started + t);
    let mut deadline_fired = false;
    // Set by the first forward: the one TERM → grace → KILL of sys::kill,
    // its SIGKILL due `kill_after` later.
    let mut end: Option<Escalation> = None;
    let forward = |child: &spawn::Child, why: &str, end: &mut Option<Escalation>| {
        say!("{why}: forwarding SIGTERM to process group {}", child.pid);
        match end {
            Some(e) => e.term(),
            None => {
                *end = Some(Escalation::start(
                    Target::Group(child.pid),
                    Instant::now() + opts.kill_after,
                ))
            }
        }
    };
    if let Some(why) = parent_gone {
        say!("{why}");
        forward(&child, "parent already gone at start", &mut end);
    }
    loop {
        if child.try_reap()? {
            break;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| !deadline_fired && now >= d) {
            deadline_fired = true;
            say!(
                "deadline reached after {}",
                crate::units::human(now - started)
            );
            forward(&child, "deadline", &mut end);
            if let Some(e) = end.as_mut() {
                e.rearm(now + opts.grace);
            }
            continue;
        }
        if let Some(e) = end.as_mut().filter(|e| e.due(now)) {
            say!("grace expired: SIGKILL to process group {}", child.pid);
            e.kill();
            // Keep re-sending now and then: a KILL is final, but a member
            // forked after it would otherwise be missed until the sweep.
            e.rearm(now + Duration::from_secs(1));
            continue;
        }
        let next = [
            deadline.filter(|_| !deadline_fired),
            end.and_then(|e| e.deadline()),
        ]
        .into_iter()
        .flatten()
        .min();
        let mut fds = [
            PollFd::new(child.pidfd(), PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, crate::sys::latch::timeout_until(next)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("poll on the child and the signalfd failed"),
        }
        // Every signal that came is forwarded, each time (SPEC 2: a second
        // signal is forwarded again, never lost).
        while let Ok(Some(info)) = signals.read_signal() {
            let name = signal_name(info.ssi_signo as i32);
            forward(&child, &format!("received {name}"), &mut end);
        }
    }
    let status = child.status().context("child status missing after reap")?;
    if end.is_some() {
        // The wrapper stepped in: say how the command took it, because after
        // a deadline the exit code (142) no longer tells.
        say!("the command ended: {status}");
    }
    let left = kill::sweep_descendants(opts.grace);
    if left > 0 {
        say!("ended {left} leftover descendant process(es)");
    }
    Ok(if deadline_fired {
        crate::exit::DEADLINE
    } else {
        status.code()
    })
}

/// Whether the process that started the wrapper was already gone when
/// PDEATHSIG was set (a later death arrives as SIGTERM). Returns the reason.
///
/// A parent that died after `main` read `start_ppid` shows as a changed
/// parent pid. One that died earlier (Drone's `sh` SIGKILLed between its
/// fork and our `main`) is invisible to that comparison, because we were
/// re-parented before we could look. Our session still tells: a process that
/// is not a session leader keeps the session of the process that forked it,
/// and the reaper it is handed to (init, or a subreaper such as systemd) is
/// in another session; Drone's `sh` shares its runner's session. Only a parent
/// that calls `setsid()` after forking us would be taken for a dead one.
fn parent_gone_at_start(start_ppid: Pid) -> Option<String> {
    use nix::unistd::{getpid, getppid, getsid};
    let ppid = getppid();
    if ppid != start_ppid {
        return Some(format!(
            "parent {start_ppid} died before the guard was set (now {ppid})"
        ));
    }
    let Ok(own) = getsid(None) else {
        return None;
    };
    if own == getpid() {
        // A session leader called setsid() itself (`setsid cc-ci-run ...`):
        // its session says nothing about who forked it.
        return None;
    }
    match getsid(Some(ppid)) {
        Ok(theirs) if theirs == own => None,
        Ok(theirs) => Some(format!(
            "parent {ppid} is in session {theirs}, not ours ({own}): the process that started us died before we ran"
        )),
        // ESRCH: it died since getppid (PDEATHSIG has fired as well).
        Err(e) => Some(format!("parent {ppid} cannot be inspected: {e}")),
    }
}

/// The shell's codes for a command that could not be started.
fn spawn_error_code(err: &anyhow::Error) -> i32 {
    let kind = err
        .chain()
        .find_map(|c| c.downcast_ref::<std::io::Error>())
        .map(|e| e.kind());
    match kind {
        Some(std::io::ErrorKind::NotFound) => crate::exit::NOT_FOUND,
        Some(std::io::ErrorKind::PermissionDenied) => crate::exit::NOT_EXECUTABLE,
        _ => crate::exit::INFRA,
    }
}
