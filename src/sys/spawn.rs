//! Spawning children in their own process group or session and waiting on
//! them in a way a shutdown request can interrupt.
//!
//! The races it closes:
//! - a child is spawned with `PR_SET_PDEATHSIG(SIGTERM)` set between clone
//!   and exec, so it cannot outlive us even if we are SIGKILLed; the flag
//!   fires on the exit of the parent *thread*, so children are only ever
//!   spawned from a thread that lives as long as the process (the main
//!   thread);
//! - the pidfd is made by the same `clone` as the child (`CLONE_PIDFD`), so
//!   a wait can be multiplexed with the shutdown latch in one `poll` and a
//!   recycled pid is never signalled through it;
//! - the child runs in our address space until it execs (see [`spawn`]):
//!   no handler of ours may run in it, so every signal is blocked across
//!   the clone and the child resets the handlers before it unblocks.
//!
//! What a child is started with is a [`Spec`](super::spec::Spec); one
//! function, [`spawn`], starts every child the runner has (the tests, the
//! wrapper's command, each `abra`, `git` and `curl`).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;

pub use super::spec::Isolation;
use super::spec::{Spec, Stdio};

use crate::sys::kill::{kill_group_members, Escalation, Target};
use crate::sys::latch::{self, Latch};

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Exited(i32),
    Signaled(i32),
}

impl Status {
    /// The shell's exit code for this status: the code, or 128+signal.
    pub fn code(self) -> i32 {
        match self {
            Status::Exited(c) => c,
            Status::Signaled(s) => crate::exit::for_signal(s),
        }
    }

    pub fn success(self) -> bool {
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
pub struct Usage {
    /// Peak resident set size in bytes.
    pub max_rss: u64,
    /// User plus system CPU time.
    pub cpu: Duration,
}

/// A running child: its pid (also its process group id) and a pidfd on it.
#[derive(Debug)]
pub struct Child {
    pub pid: Pid,
    pidfd: OwnedFd,
    reaped: Option<(Status, Usage)>,
}

/// What ended a wait.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited {
    Exited,
    Cancelled,
    TimedOut,
}

/// The caller's stack the child runs on, in bytes (see [`spawn`]). The
/// child's frames are a few hundred bytes and the libc wrappers it calls
/// (thin system-call stubs) little more: 16 KiB is three times what
/// musl's posix_spawn gives its child (1024 + PATH_MAX). Not more: Rust
/// probes every page of a large frame, and each page touched is a page
/// fault on the exec wrapper's short life (64 KiB cost 16 of them).
const CHILD_STACK: usize = 16 * 1024;

/// The highest signal number on Linux (`_NSIG - 1`).
const LAST_SIGNAL: libc::c_int = 64;

/// What `execvp` runs a file with that the kernel cannot execute itself
/// (ENOEXEC: a script without `#!`), as glibc and `std::process` did.
const SHELL: &std::ffi::CStr = c"/bin/sh";

/// The step of the child's set-up that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    None,
    Session,
    Group,
    Pdeathsig,
    ParentGone,
    Rlimit,
    Stdio,
    CloseRange,
    Chdir,
    Exec,
}

impl Step {
    fn describe(self) -> &'static str {
        match self {
            Step::None | Step::Exec => "execve",
            Step::Session => "setsid",
            Step::Group => "setpgid",
            Step::Pdeathsig => "PR_SET_PDEATHSIG",
            Step::ParentGone => "the parent exited before PDEATHSIG was set",
            Step::Rlimit => "setrlimit",
            Step::Stdio => "dup2 of a standard stream",
            Step::CloseRange => "close_range",
            Step::Chdir => "chdir",
        }
    }
}

/// What the child reads, all prepared by the parent before the clone, and
/// where it leaves the reason it could not exec.
struct ChildArgs {
    isolation: Isolation,
    mask: libc::sigset_t,
    parent: libc::pid_t,
    rlimits: *const (nix::sys::resource::Resource, libc::rlimit),
    n_rlimits: usize,
    /// Source descriptor of stdin, stdout and stderr; -1: inherited.
    stdio: [libc::c_int; 3],
    cwd: *const libc::c_char,
    candidates: *const *const libc::c_char,
    n_candidates: usize,
    argv: *const *const libc::c_char,
    /// `/bin/sh`, a slot for the file, then `argv[1..]` (for ENOEXEC).
    shell_argv: *mut *const libc::c_char,
    envp: *const *const libc::c_char,
    failed: Step,
    errno: libc::c_int,
}

/// Starts the child `spec` describes in its own process group or session
/// with PDEATHSIG=SIGTERM, and returns it with a pidfd. Must be called from
/// a thread that lives as long as the child should (the main thread; see
/// the module header).
///
/// The child is made with `clone(CLONE_VM | CLONE_VFORK)`, the way glibc's
/// and musl's `posix_spawn` make theirs, not with `fork`: it runs in our
/// address space, on a stretch of this thread's stack, until it execs, so
/// no page table is copied and no page is faulted in copy-on-write (a
/// fork of the runner cost more than the test it started). The calling
/// thread sleeps in `clone` until the child has exec'd or exited. The
/// price: the child shares memory with our other threads, so it runs only
/// `child_main`, which makes system calls on data prepared here, and
/// never allocates, locks or unwinds. `posix_spawn` itself cannot set
/// PDEATHSIG or resource limits.
pub fn spawn(spec: &Spec<'_>) -> Result<Child> {
    let program = spec.program();
    if spec.saw_nul() {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput)).with_context(|| {
            format!("failed to start {program:?}: a NUL byte in its arguments, environment or directory")
        });
    }
    let candidates = spec.candidates();
    if candidates.is_empty() {
        return Err(std::io::Error::from_raw_os_error(libc::ENOENT))
            .with_context(|| format!("failed to start {program:?}"));
    }
    let null = std::ptr::null::<libc::c_char>();
    let argv: Vec<*const libc::c_char> = spec
        .argv()
        .iter()
        .map(|a| a.as_ptr())
        .chain([null])
        .collect();
    let envp: Vec<*const libc::c_char> = spec.envp().map(|e| e.as_ptr()).chain([null]).collect();
    let candidate_ptrs: Vec<*const libc::c_char> = candidates.iter().map(|c| c.as_ptr()).collect();
    let mut shell_argv: Vec<*const libc::c_char> = [SHELL.as_ptr(), null]
        .into_iter()
        .chain(argv.iter().skip(1).copied())
        .collect();
    // A source descriptor in 0..=2 other than its own slot could be
    // overwritten by an earlier dup2 in the child: such a one is moved
    // above 2 here first (close-on-exec; dropped when we return).
    let mut moved: Vec<OwnedFd> = Vec::new();
    let mut stdio = [-1; 3];
    for (slot, (s, target)) in spec.stdio.iter().zip(stdio.iter_mut()).enumerate() {
        *target = match s {
            Stdio::Inherit => -1,
            Stdio::Null => dev_null()?.as_raw_fd(),
            Stdio::Fd(fd) if (0..3).contains(&fd.as_raw_fd()) && fd.as_raw_fd() != slot as i32 => {
                let high =
                    nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
                        .context("failed to move a standard stream's descriptor above 2")?;
                // SAFETY: a fresh descriptor that nothing else owns.
                let high = unsafe { OwnedFd::from_raw_fd(high) };
                let raw = high.as_raw_fd();
                moved.push(high);
                raw
            }
            Stdio::Fd(fd) => fd.as_raw_fd(),
        };
    }
    let mask = match &spec.sigmask {
        Some(m) => *m.as_ref(),
        None => *SigSet::empty().as_ref(),
    };
    let mut args = ChildArgs {
        isolation: spec.isolation,
        mask,
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
        rlimits: spec.rlimits.as_ptr(),
        n_rlimits: spec.rlimits.len(),
        stdio,
        cwd: spec.cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
        candidates: candidate_ptrs.as_ptr(),
        n_candidates: candidate_ptrs.len(),
        argv: argv.as_ptr(),
        shell_argv: shell_argv.as_mut_ptr(),
        envp: envp.as_ptr(),
        failed: Step::None,
        errno: 0,
    };
    // The child's stack is a stretch of ours, below this frame and above
    // the frames of `clone`, as in musl's posix_spawn: we do not run while
    // it does, and no other thread uses this stack.
    let mut stack = std::mem::MaybeUninit::<[u8; CHILD_STACK]>::uninit();
    let top = stack.as_mut_ptr().cast::<u8>().wrapping_add(CHILD_STACK);
    let top = top.wrapping_sub(top as usize % 16).cast::<libc::c_void>();
    let mut pidfd: libc::c_int = -1;

    // Every signal is blocked across the clone, as glibc's posix_spawn
    // does: a handler of ours that ran in the child before it resets the
    // handlers would run on the child's stack over memory our other
    // threads use. The child sets its own mask once the handlers are
    // reset.
    let all = SigSet::all();
    let mut before = SigSet::empty();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&all), Some(&mut before))
        .context("failed to block signals around a spawn")?;
    // CLONE_PIDFD: the kernel hands us a pidfd made with the child, so
    // no pid recycled after an early exit can be mistaken for it.
    // SIGCHLD: the child is reaped like any forked one (wait4 by pid).
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD;
    // SAFETY: `child_main` only reads `args` and the buffers it points to,
    // which outlive the call (we are suspended until the child execs or
    // exits), and runs on `top`, the top of a stack area nothing else
    // uses meanwhile; CLONE_PIDFD writes the descriptor to `pidfd`.
    let pid = unsafe {
        libc::clone(
            child_main,
            top,
            flags,
            (&mut args as *mut ChildArgs).cast::<libc::c_void>(),
            &mut pidfd as *mut libc::c_int,
        )
    };
    let clone_error = std::io::Error::last_os_error();
    let restored = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&before), None);
    // Keep the borrowed buffers alive past the clone, as the child used them.
    drop((candidates, candidate_ptrs, argv, envp, shell_argv, moved));
    if pid < 0 {
        return Err(clone_error).with_context(|| format!("failed to start {program:?}: clone"));
    }
    // SAFETY: CLONE_PIDFD stored a fresh descriptor (close-on-exec, as
    // every pidfd) that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let pid = Pid::from_raw(pid);
    if args.failed != Step::None {
        // The child has exited (it stopped us no longer): reap it now so
        // no zombie is left.
        reap_blocking(pid);
        let err = std::io::Error::from_raw_os_error(args.errno);
        return Err(err).with_context(|| match args.failed {
            Step::Exec => format!("failed to start {program:?}"),
            step => format!("failed to start {program:?}: {}", step.describe()),
        });
    }
    restored.context("failed to restore the signal mask after a spawn")?;
    Ok(Child {
        pid,
        pidfd,
        reaped: None,
    })
}

/// `/dev/null`, opened once for every child whose stream goes nowhere.
fn dev_null() -> Result<BorrowedFd<'static>> {
    static DEV_NULL: OnceLock<OwnedFd> = OnceLock::new();
    if DEV_NULL.get().is_none() {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .context("failed to open /dev/null")?;
        // A second opener's descriptor is dropped: one is kept either way.
        let _ = DEV_NULL.set(f.into());
    }
    DEV_NULL
        .get()
        .map(|fd| fd.as_fd())
        .context("failed to keep /dev/null open")
}

/// Waits for a child that has already exited (or is about to).
fn reap_blocking(pid: Pid) {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: a valid pointer to a local; pid is our own child.
        let r = unsafe { libc::waitpid(pid.as_raw(), &mut status, 0) };
        if r >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// The child between clone and exec. It shares our memory with our other
/// threads, so it makes only system calls (through libc's thin wrappers,
/// which take no lock) on `ChildArgs`, and exits with 127 after leaving
/// the failed step and errno there.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` the parent passed to clone; the
    // parent thread sleeps until we exec or exit and no other thread knows
    // of it, so this is the only reference.
    let a = unsafe { &mut *arg.cast::<ChildArgs>() };
    // SAFETY: called once, on the prepared arguments (see set_up_and_exec).
    let (step, errno) = unsafe { set_up_and_exec(a) };
    a.failed = step;
    a.errno = errno;
    // SAFETY: _exit ends the child at once: no atexit handler or stdio
    // flush of the parent's runs here.
    unsafe { libc::_exit(127) }
}

/// The last error of a libc call in the child. errno lives in the TLS of
/// the parent thread, which sleeps in clone until we exec or exit.
unsafe fn errno() -> libc::c_int {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Every set-up step in order, then execve; returns only on failure.
///
/// # Safety
/// Only in the child of `spawn`'s clone, with `a` as prepared there.
unsafe fn set_up_and_exec(a: &mut ChildArgs) -> (Step, libc::c_int) {
    // SAFETY (for the whole body): plain system calls on locals and on the
    // buffers `a` points to, which the parent keeps alive and unchanged.
    unsafe {
        // setsid: out of reach of a kill of our group or terminal (the
        // harness under the wrapper); setpgid: a group the runner can
        // signal as a whole, test by test.
        let placed = match a.isolation {
            Isolation::Session => (libc::setsid() >= 0, Step::Session),
            Isolation::Group => (libc::setpgid(0, 0) >= 0, Step::Group),
        };
        if !placed.0 {
            return (placed.1, errno());
        }
        // Do now what exec will do anyway: signals we handle go back to
        // the default action (ignored ones stay ignored). Otherwise a
        // PDEATHSIG that fires between the prctl below and exec runs our
        // inherited handler in this child and is used up, and the
        // command starts with its parent dead and nothing to tell it.
        for sig in 1..=LAST_SIGNAL {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction != libc::SIG_DFL
                && old.sa_sigaction != libc::SIG_IGN
            {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        // Rust's runtime ignores SIGPIPE in the runner; a child gets the
        // default back, as `std::process` gives it, so `cmd | head` ends.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        // Everything was blocked across the clone: the asked mask now, so
        // a signal pending meanwhile meets the default action set above.
        libc::pthread_sigmask(libc::SIG_SETMASK, &a.mask, std::ptr::null_mut());
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGTERM as libc::c_ulong,
            0,
            0,
            0,
        ) < 0
        {
            return (Step::Pdeathsig, errno());
        }
        // If the parent died between the clone and the prctl, PDEATHSIG
        // will never fire: check once more and stop here.
        if libc::getppid() != a.parent {
            return (Step::ParentGone, libc::ESRCH);
        }
        for i in 0..a.n_rlimits {
            let (res, lim) = &*a.rlimits.add(i);
            if libc::setrlimit(*res as _, lim) < 0 {
                return (Step::Rlimit, errno());
            }
        }
        for (target, src) in (0..).zip(a.stdio) {
            if src < 0 {
                continue;
            }
            // dup2 onto itself leaves close-on-exec set: clear it instead.
            let ok = if src == target {
                libc::fcntl(src, libc::F_SETFD, 0) >= 0
            } else {
                libc::dup2(src, target) >= 0
            };
            if !ok {
                return (Step::Stdio, errno());
            }
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
            return (Step::CloseRange, errno());
        }
        if !a.cwd.is_null() && libc::chdir(a.cwd) < 0 {
            return (Step::Chdir, errno());
        }
        // execvp's search: a candidate that is missing or not a directory
        // is skipped, EACCES is remembered and reported if nothing else
        // runs, any other error ends the search (glibc posix/execvpe.c).
        let mut denied = false;
        let mut last = libc::ENOENT;
        for i in 0..a.n_candidates {
            let path = *a.candidates.add(i);
            libc::execve(path, a.argv, a.envp);
            last = errno();
            if last == libc::ENOEXEC {
                *a.shell_argv.add(1) = path;
                libc::execve(SHELL.as_ptr(), a.shell_argv.cast_const(), a.envp);
                last = errno();
            }
            match last {
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ESTALE | libc::ENOTDIR | libc::ENODEV | libc::ETIMEDOUT => {}
                _ => return (Step::Exec, last),
            }
        }
        (Step::Exec, if denied { libc::EACCES } else { last })
    }
}

impl Child {
    /// Waits until the child exits, `cancel` is set, or `deadline` passes.
    /// On `Exited` the child is reaped and [`Child::status`] is filled.
    pub fn wait(&mut self, cancel: Option<&Latch>, deadline: Option<Instant>) -> Result<Waited> {
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
    pub fn try_reap(&mut self) -> Result<bool> {
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
    pub fn pidfd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// The exit status once reaped.
    pub fn status(&self) -> Option<Status> {
        self.reaped.map(|(s, _)| s)
    }

    pub fn usage(&self) -> Option<Usage> {
        self.reaped.map(|(_, u)| u)
    }

    /// SIGTERM to the group, up to `grace` for the leader to exit, then
    /// SIGKILL to the group; always returns with the leader reaped.
    pub fn terminate(&mut self, grace: Duration) -> Result<Status> {
        if !self.try_reap()? {
            let mut end = Escalation::start(Target::Group(self.pid), Instant::now() + grace);
            while self.wait(None, end.deadline())? != Waited::Exited {
                end.kill();
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
    run_captured_from(cmd, Stdio::Null, cancel, deadline, grace)
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
    run_captured_from(cmd, Stdio::Fd(file.as_fd()), cancel, deadline, grace)
}

/// [`run_captured`] with `stdin` as the child's standard input.
fn run_captured_from(
    cmd: &Command,
    stdin: Stdio<'_>,
    cancel: Option<&Latch>,
    deadline: Option<Instant>,
    grace: Duration,
) -> Result<Ran> {
    use std::io::{Read, Seek};
    let mut out = tempfile::tempfile().context("failed to create a capture file")?;
    let mut err = tempfile::tempfile().context("failed to create a capture file")?;
    let mut spec = Spec::from_command(cmd, Isolation::Group);
    spec.stdin(stdin)
        .stdout(Stdio::Fd(out.as_fd()))
        .stderr(Stdio::Fd(err.as_fd()));
    let mut child = spawn(&spec)?;
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
