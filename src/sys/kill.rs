//! Ending processes: signalling a group, the one TERM → grace → KILL
//! escalation ([`Escalation`], non-blocking, the only sender of SIGKILL)
//! every caller uses, its blocking form over /proc scans ([`escalate`]),
//! and the end-of-life sweep.
//!
//! The races it closes:
//! - a process group outlives its leader: `killpg` after the leader exited
//!   still reaches the members, and the kernel does not hand the pgid to a
//!   new process while any member exists;
//! - a process forked during the grace is found by the next /proc scan and
//!   gets its SIGTERM too; after the grace everything found is SIGKILLed,
//!   repeated until a scan finds nothing alive;
//! - only our own zombies are reaped, by pid: a `waitpid(-1)` could take
//!   the exit status of a child another part of the program is tracking
//!   (except at end of life, when nothing else is);
//! - as a child subreaper we inherit orphaned descendants (even ones that
//!   setsid away), so "nothing left" is checked by scanning /proc for our
//!   descendants and reaping until `ECHILD`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::sys::procfs::{self, ProcInfo};

/// Signals a process group; a group that is already gone is not an error.
pub(crate) fn signal_group(pgid: Pid, sig: Signal) {
    match killpg(pgid, sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => crate::say!("could not send {sig} to process group {pgid}: {e}"),
    }
}

/// What an [`Escalation`] signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A whole process group (see [`signal_group`]).
    Group(Pid),
    /// One process; one that is already gone is not an error.
    Process(Pid),
}

impl Target {
    fn send(self, sig: Signal) {
        match self {
            Target::Group(pgid) => signal_group(pgid, sig),
            Target::Process(pid) => {
                let _ = kill(pid, sig);
            }
        }
    }
}

/// The one TERM → grace → KILL escalation, without blocking: the caller
/// keeps its own loop (a `poll` on pidfds and signals, a /proc scan) and
/// asks [`Escalation::due`] whenever it wakes, with
/// [`Escalation::deadline`] as its timeout. SIGKILL is sent here and
/// nowhere else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Escalation {
    target: Target,
    kill_at: Instant,
    /// SIGKILL went since the last arming.
    killed: bool,
}

impl Escalation {
    /// SIGTERM to `target` now; SIGKILL falls due at `kill_at`.
    pub(crate) fn start(target: Target, kill_at: Instant) -> Escalation {
        target.send(Signal::SIGTERM);
        Escalation::armed(target, kill_at)
    }

    /// SIGKILL falls due at `kill_at`, with no SIGTERM now (a process
    /// found after the grace gets no grace of its own; `kill_at` of now
    /// is no grace at all).
    pub(crate) fn armed(target: Target, kill_at: Instant) -> Escalation {
        Escalation {
            target,
            kill_at,
            killed: false,
        }
    }

    /// SIGTERM to the target again (a signal forwarded once more); the
    /// time SIGKILL falls due does not move.
    pub(crate) fn term(&self) {
        self.target.send(Signal::SIGTERM);
    }

    /// Whether SIGKILL is due at `now` and has not been sent since the
    /// last arming.
    pub(crate) fn due(&self, now: Instant) -> bool {
        !self.killed && now >= self.kill_at
    }

    /// When SIGKILL falls due (None once it went): the caller's next wake.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        (!self.killed).then_some(self.kill_at)
    }

    /// SIGKILL to the target now.
    pub(crate) fn kill(&mut self) {
        self.target.send(Signal::SIGKILL);
        self.killed = true;
    }

    /// SIGKILL falls due (again) at `at`: a deadline that shortens the
    /// grace, or a KILL repeated for members forked after the last one.
    pub(crate) fn rearm(&mut self, at: Instant) {
        self.kill_at = at;
        self.killed = false;
    }
}

/// Members of process group `pgid` other than its leader that are still
/// alive: the [`escalate`] of SIGTERM, `grace`, SIGKILL. Returns the pids
/// that were found (for leak reports).
pub(crate) fn kill_group_members(pgid: Pid, grace: Duration) -> Vec<i32> {
    // Signal 0 to the group: ESRCH means no process (not even a zombie) is
    // in it, so there is nothing to find, and the common case (a command
    // that started nothing lasting) skips reading every process's /proc
    // entry. The kernel keeps the pgid from a new process while any member
    // exists, so an empty group cannot be refilled by strangers meanwhile.
    if killpg(pgid, None) == Err(Errno::ESRCH) {
        return Vec::new();
    }
    let leader = pgid.as_raw();
    escalate(grace, |procs| {
        procs
            .iter()
            .filter(|p| p.pgid == leader && p.pid != leader)
            .map(|p| p.pid)
            .collect()
    })
    .into_iter()
    .collect()
}

/// Reaps every child that has already exited (orphans re-parented to us as
/// subreaper end up here). Returns the number reaped and whether we still
/// have children.
pub(crate) fn reap_orphans() -> (usize, bool) {
    let mut n = 0;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return (n, true),
            Ok(_) => n += 1,
            Err(Errno::EINTR) => {}
            Err(_) => return (n, false), // ECHILD: no children at all
        }
    }
}

/// End of life: every remaining descendant gets the [`escalate`] of
/// SIGTERM, `grace`, SIGKILL; returns only when none is left and all are
/// reaped. Returns how many descendants were found.
pub(crate) fn sweep_descendants(grace: Duration) -> usize {
    let me = std::process::id() as i32;
    // Every descendant hangs off one of our children, so with no child at
    // all (ECHILD once the exited ones are reaped) there is nothing to find,
    // and the common case skips reading every process's /proc entry.
    if !reap_orphans().1 {
        return 0;
    }
    let found = escalate(grace, |procs| procfs::proc_descendants(procs, me)).len();
    // Nothing is alive any more: what is left are zombies of children
    // between their exit and our reap.
    while reap_orphans().1 {
        std::thread::sleep(Duration::from_millis(2));
    }
    found
}

/// Ends the processes `pick` chooses from each fresh /proc scan, the
/// blocking form of [`Escalation`]: each live one gets its own when first
/// seen (SIGTERM, unless `grace` has passed by then), all due at `grace`
/// from the start; SIGKILL to all once due, repeated at every scan until
/// one finds none alive. Zombies among them that are our children are
/// reaped by pid. Returns the live pids that were found.
pub(crate) fn escalate(
    grace: Duration,
    mut pick: impl FnMut(&[ProcInfo]) -> Vec<i32>,
) -> BTreeSet<i32> {
    let me = std::process::id() as i32;
    let deadline = Instant::now() + grace;
    let mut found: BTreeMap<i32, Escalation> = BTreeMap::new();
    loop {
        let procs = procfs::scan();
        let info: HashMap<i32, &ProcInfo> = procs.iter().map(|p| (p.pid, p)).collect();
        let picked = pick(&procs);
        let mut live = Vec::new();
        for pid in picked {
            let Some(p) = info.get(&pid) else { continue };
            if p.zombie {
                if p.ppid == me {
                    let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
                }
            } else {
                live.push(pid);
            }
        }
        if live.is_empty() {
            return found.into_keys().collect();
        }
        let now = Instant::now();
        for pid in live {
            let esc = found.entry(pid).or_insert_with(|| {
                let target = Target::Process(Pid::from_raw(pid));
                if now >= deadline {
                    Escalation::armed(target, deadline)
                } else {
                    Escalation::start(target, deadline)
                }
            });
            if esc.due(now) {
                esc.kill();
                // Again at every scan until none is left alive.
                esc.rearm(now);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
