//! Spawning children in their own process group or session and waiting on
//! them in a way a shutdown request can interrupt.
//!
//! The races it closes:
//! - a child is spawned with `PR_SET_PDEATHSIG(SIGTERM)` set between fork and
//!   exec, so it cannot outlive us even if we are SIGKILLed; the flag fires
//!   on the exit of the parent *thread*, so children are only ever spawned
//!   from a thread that lives as long as the process (the main thread);
//! - we wait on a pidfd, not on a pid, so a wait can be multiplexed with the
//!   shutdown latch in one `poll` and a recycled pid is never signalled
//!   through it.

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::sys::kill::{kill_group_members, signal_group};
use crate::sys::latch::{self, Latch};

/// How a child's process group is placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isolation {
    /// `setsid()`: its own session and process group, out of reach of a kill
    /// of our process group or terminal.
    Session,
    /// `setpgid(0, 0)`: its own process group within our session.
    Group,
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Exited(i32),
    Signaled(i32),
}

impl Status {
    /// The shell's exit code for this status: the code, or 128+signal.
    pub(crate) fn code(self) -> i32 {
        match self {
            Status::Exited(c) => c,
            Status::Signaled(s) => crate::exit::for_signal(s),
        }
    }

    pub(crate) fn success(self) -> bool {
        self == Status::Exited(0)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Exited(c) => write!(f, "exit {c}"),
            Status::Signaled(s) => match Signal::try_from(*s) {
                Ok(sig) => write!(f, "killed by {sig}"),
                Err(_) => write!(f, "killed by signal {s}"),
            },
        }
    }
}

/// The kernel's accounting of a finished child (`wait4`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Usage {
    /// Peak resident set size in bytes.
    pub max_rss: u64,
    /// User plus system CPU time.
    pub cpu: Duration,
}

/// A running child: its pid (also its process group id) and a pidfd on it.
#[derive(Debug)]
pub(crate) struct Child {
    pub pid: Pid,
    pidfd: OwnedFd,
    reaped: Option<(Status, Usage)>,
}

/// What ended a wait.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Waited {
    Exited,
    Cancelled,
    TimedOut,
}

/// Spawns `cmd` in its own process group or session with PDEATHSIG=SIGTERM.
/// Must be called from the main thread (see the module header).
pub(crate) fn spawn(cmd: &mut Command, isolation: Isolation) -> Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe system calls (setsid, setpgid, sigaction, prctl,
    // close_range, getppid).
    unsafe {
        cmd.pre_exec(move || {
            match isolation {
                Isolation::Session => {
                    if libc::setsid() < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Isolation::Group => {
                    if libc::setpgid(0, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
            }
            // Do now what exec will do anyway: signals we handle go back to
            // the default action (ignored ones stay ignored). Otherwise a
            // PDEATHSIG that fires between the prctl below and exec runs our
            // inherited handler in this child and is used up, and the
            // command starts with its parent dead and nothing to tell it.
            for sig in 1..=libc::SIGRTMAX() {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                    && old.sa_sigaction != libc::SIG_DFL
                    && old.sa_sigaction != libc::SIG_IGN
                {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            ) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // Descriptors we did not open on purpose (an inherited pipe of
            // the CI runner, anything a library leaked) never reach the
            // child: mark every fd above 2 close-on-exec.
            if libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            ) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // If we died between fork and prctl, PDEATHSIG will never fire:
            // check the parent once more and stop here.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("failed to start {:?}", cmd.get_program()))?;
    let pid = Pid::from_raw(child.id() as i32);
    // std's Child is dropped without waiting: we reap by pid ourselves
    // (wait4, for the rusage), and its stdio handles were taken by the caller
    // or inherited.
    drop(child);
    let pidfd = pidfd_open(pid).context("failed to open a pidfd on the child")?;
    Ok(Child {
        pid,
        pidfd,
        reaped: None,
    })
}

fn pidfd_open(pid: Pid) -> std::io::Result<OwnedFd> {
    // SAFETY: plain system call; the returned descriptor is owned below. The
    // kernel sets O_CLOEXEC on pidfds.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl Child {
    /// Waits until the child exits, `cancel` is set, or `deadline` passes.
    /// On `Exited` the child is reaped and [`Child::status`] is filled.
    pub(crate) fn wait(
        &mut self,
        cancel: Option<&Latch>,
        deadline: Option<Instant>,
    ) -> Result<Waited> {
        loop {
            if self.try_reap()? {
                return Ok(Waited::Exited);
            }
            if cancel.is_some_and(|c| c.is_set()) {
                return Ok(Waited::Cancelled);
            }
            let timeout = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(Waited::TimedOut);
                    }
                    latch::timeout_for(d - now)
                }
                None => PollTimeout::NONE,
            };
            let mut fds = vec![PollFd::new(self.pidfd.as_fd(), PollFlags::POLLIN)];
            if let Some(c) = cancel {
                fds.push(PollFd::new(c.fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e).context("poll on a child's pidfd failed"),
            }
        }
    }

    /// Reaps the child if it has exited; true when it has.
    pub(crate) fn try_reap(&mut self) -> Result<bool> {
        if self.reaped.is_some() {
            return Ok(true);
        }
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain old data, fully written by wait4 on success.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to locals; pid is our own child.
        let r = unsafe { libc::wait4(self.pid.as_raw(), &mut status, libc::WNOHANG, &mut ru) };
        if r == 0 {
            return Ok(false);
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                return Ok(false);
            }
            return Err(e).context("wait4 on a child failed");
        }
        let st = if libc::WIFSIGNALED(status) {
            Status::Signaled(libc::WTERMSIG(status))
        } else {
            Status::Exited(libc::WEXITSTATUS(status))
        };
        let usage = Usage {
            max_rss: (ru.ru_maxrss.max(0) as u64) * 1024,
            cpu: timeval(ru.ru_utime) + timeval(ru.ru_stime),
        };
        self.reaped = Some((st, usage));
        Ok(true)
    }

    /// The pidfd: readable once the child has exited, for callers that
    /// wait on several children (and a latch) in one `poll`.
    pub(crate) fn pidfd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// The exit status once reaped.
    pub(crate) fn status(&self) -> Option<Status> {
        self.reaped.map(|(s, _)| s)
    }

    pub(crate) fn usage(&self) -> Option<Usage> {
        self.reaped.map(|(_, u)| u)
    }

    /// Signals the child's whole process group (the child is its leader).
    pub(crate) fn signal_group(&self, sig: Signal) {
        signal_group(self.pid, sig);
    }

    /// SIGTERM to the group, up to `grace` for the leader to exit, then
    /// SIGKILL to the group; always returns with the leader reaped.
    pub(crate) fn terminate(&mut self, grace: Duration) -> Result<Status> {
        if !self.try_reap()? {
            self.signal_group(Signal::SIGTERM);
            if self.wait(None, Some(Instant::now() + grace))? != Waited::Exited {
                self.signal_group(Signal::SIGKILL);
                self.wait(None, None)?;
            }
        }
        // Members of the group that outlived the leader get the same end.
        kill_group_members(self.pid, grace);
        self.status()
            .context("child was not reaped after termination")
    }
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
}

/// Makes this process a child subreaper: orphaned descendants (daemons that
/// double-fork and setsid away) are re-parented to us instead of init, so we
/// can find and end them.
pub(crate) fn become_subreaper() -> Result<()> {
    nix::sys::prctl::set_child_subreaper(true).context("PR_SET_CHILD_SUBREAPER failed")
}

/// Sets PR_SET_PDEATHSIG(SIGTERM) on this process.
pub(crate) fn set_parent_death_signal() -> Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).context("PR_SET_PDEATHSIG failed")
}

/// What an external command printed, and how it ended.
#[derive(Debug)]
pub(crate) struct Output {
    pub status: Status,
    pub stdout: String,
    pub stderr: String,
}

/// How a bounded, cancellable command ended.
#[derive(Debug)]
pub(crate) enum Ran {
    Done(Output),
    /// The cancel latch was set; the command's group was terminated.
    Cancelled,
    /// The deadline passed; the command's group was terminated.
    TimedOut,
}

/// Runs `cmd` in its own process group with stdout and stderr captured to
/// unnamed temporary files (a pipe would keep its reader waiting on any
/// daemonised grandchild that inherited it). On cancel or deadline the group
/// gets SIGTERM, `grace`, SIGKILL.
pub(crate) fn run_captured(
    cmd: &mut Command,
    cancel: Option<&Latch>,
    deadline: Option<Instant>,
    grace: Duration,
) -> Result<Ran> {
    cmd.stdin(std::process::Stdio::null());
    run_captured_from(cmd, cancel, deadline, grace)
}

/// Like [`run_captured`], with `input` on the child's stdin: an unnamed
/// temporary file (O_TMPFILE: no name anyone could open; the child reads
/// it from the start), not a pipe, so no writer thread races the child.
/// What must stay out of every command line (a forge's token in curl's
/// configuration) goes this way.
pub(crate) fn run_captured_with_input(
    cmd: &mut Command,
    input: &[u8],
    cancel: Option<&Latch>,
    deadline: Option<Instant>,
    grace: Duration,
) -> Result<Ran> {
    use std::io::{Seek, Write};
    let mut file = tempfile::tempfile().context("failed to create an input file")?;
    file.write_all(input)
        .and_then(|()| file.rewind())
        .context("failed to write an input file")?;
    cmd.stdin(file);
    run_captured_from(cmd, cancel, deadline, grace)
}

/// [`run_captured`] once the caller has set the child's stdin.
fn run_captured_from(
    cmd: &mut Command,
    cancel: Option<&Latch>,
    deadline: Option<Instant>,
    grace: Duration,
) -> Result<Ran> {
    use std::io::{Read, Seek};
    let mut out = tempfile::tempfile().context("failed to create a capture file")?;
    let mut err = tempfile::tempfile().context("failed to create a capture file")?;
    cmd.stdout(out.try_clone().context("failed to dup a capture file")?)
        .stderr(err.try_clone().context("failed to dup a capture file")?);
    let mut child = spawn(cmd, Isolation::Group)?;
    let waited = child.wait(cancel, deadline)?;
    if waited != Waited::Exited {
        child.terminate(grace)?;
        return Ok(match waited {
            Waited::Cancelled => Ran::Cancelled,
            _ => Ran::TimedOut,
        });
    }
    kill_group_members(child.pid, grace);
    let status = child.status().context("child status missing after reap")?;
    let read = |f: &mut std::fs::File| -> Result<String> {
        let mut buf = Vec::new();
        f.rewind()?;
        f.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    Ok(Ran::Done(Output {
        status,
        stdout: read(&mut out).context("failed to read captured stdout")?,
        stderr: read(&mut err).context("failed to read captured stderr")?,
    }))
}
