//! Running a planned suite: the only part of the test runner that starts,
//! signals and reaps processes. It runs on the caller's thread (the main
//! thread: a test's PDEATHSIG fires when the thread that spawned it ends)
//! as one event loop: start ready tests up to the worker count, then `poll`
//! the running tests' pidfds, the cancel latch and the next timer (a
//! timeout, the end of a grace period, a self-protection reading).
//!
//! Each test is a small state machine: running → (timeout, or a stop of the
//! suite: SIGTERM to its process group) terminating → (grace expired:
//! SIGKILL to the group) killed → exited. After the test's leader has
//! exited, whatever it left behind is found and ended (TERM, grace, KILL)
//! and the test is marked leaky:
//! - members of its process group (background jobs);
//! - processes that left the group (`setsid`, double fork) and were
//!   re-parented to us, because the runner is a child subreaper. They are
//!   recognised by the `CCCI_TEST_SUITE`/`CCCI_TEST_NAME` pair the runner
//!   puts in each test's environment, read from `/proc/PID/environ`, so a
//!   leftover of one test is never blamed on another that runs beside it;
//! - and their descendants.
//!
//! Only pids we identified are reaped (`waitpid(pid)`), never `waitpid(-1)`:
//! that would steal the exit status and rusage of a test running beside it.
//!
//! Output: each test's stdout and stderr are pipes read by two threads that
//! write the bytes to `output/<name>.stdout|.stderr` in the report
//! directory and log each line with the test's name as prefix.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::checkpoint::{self, Checkpoint, Resume};
use super::containers;
use super::meta::Tier;
use super::protect::{self, Sampler, Verdict};
use super::report::{self, Outcome, Report, Tails, TestReport};
use super::select::Scheduler;
use super::{Plan, Suite, SuiteOutcome, TestCase};
use crate::say;
use crate::sys::latch::{self, Latch};
use crate::sys::spawn::Isolation;
use crate::sys::{kill, procfs, spawn};
use crate::units::human;

/// The environment variable that marks a test's processes as this suite's.
pub const SUITE_MARK: &str = "CCCI_TEST_SUITE";
/// The environment variable that names the test a process belongs to.
pub const TEST_NAME: &str = "CCCI_TEST_NAME";

/// How long the output readers may take to see end-of-file after a test
/// and its leftovers are gone (only a process outside our reach can hold a
/// pipe open longer).
const READER_BOUND: Duration = Duration::from_secs(2);
/// Between two self-protection readings while tests run.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// How much of each output file goes into the JUnit report of a failure.
const TAIL_BYTES: u64 = 16 * 1024;

/// Why the suite stopped early.
#[derive(Clone, Debug)]
enum Stop {
    FailFast(String),
    SelfProtect(String),
    Signal(i32),
}

impl Stop {
    fn kind(&self) -> &'static str {
        match self {
            Stop::FailFast(_) => "fail-fast",
            Stop::SelfProtect(_) => "self-protect",
            Stop::Signal(_) => "signal",
        }
    }

    fn describe(&self) -> String {
        match self {
            Stop::FailFast(name) => format!("fail-fast after `{name}` failed"),
            Stop::SelfProtect(why) => format!("self-protection: {why}"),
            Stop::Signal(code) => format!("shutdown requested ({})", signal_words(*code)),
        }
    }
}

fn signal_words(code: i32) -> String {
    match code {
        crate::exit::SIGTERM => "SIGTERM, exit 143".into(),
        crate::exit::SIGINT => "SIGINT, exit 130".into(),
        crate::exit::SIGHUP => "SIGHUP, exit 129".into(),
        crate::exit::DEADLINE => "run deadline, exit 142".into(),
        c => format!("exit {c}"),
    }
}

/// Resource limits of one test, capped at the runner's own hard limits
/// (only root may raise a hard limit).
#[derive(Clone, Copy, Debug, Default)]
struct Rlimits {
    entries: [Option<(Resource, u64, u64)>; 4],
}

impl Rlimits {
    /// Applies the limits; runs in the child between fork and exec, so it
    /// only makes system calls (setrlimit is async-signal-safe in effect).
    fn apply(&self) -> std::io::Result<()> {
        for (res, soft, hard) in self.entries.iter().flatten() {
            setrlimit(*res, *soft, *hard).map_err(std::io::Error::from)?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = self
            .entries
            .iter()
            .flatten()
            .map(|(res, soft, _)| match res {
                Resource::RLIMIT_AS => format!("address space {}", report::human_bytes(*soft)),
                Resource::RLIMIT_CPU => format!("CPU {soft}s"),
                Resource::RLIMIT_NOFILE => format!("open files {soft}"),
                Resource::RLIMIT_NPROC => format!("processes {soft}"),
                other => format!("{other:?} {soft}"),
            })
            .collect();
        if parts.is_empty() {
            "no limits".into()
        } else {
            parts.join(", ")
        }
    }
}

/// The runner's hard limits, read once.
#[derive(Clone, Copy, Debug)]
struct HardLimits {
    address_space: u64,
    cpu: u64,
    nofile: u64,
    nproc: u64,
}

impl HardLimits {
    fn read() -> HardLimits {
        let hard = |r| getrlimit(r).map_or(libc::RLIM_INFINITY, |(_, h)| h);
        HardLimits {
            address_space: hard(Resource::RLIMIT_AS),
            cpu: hard(Resource::RLIMIT_CPU),
            nofile: hard(Resource::RLIMIT_NOFILE),
            nproc: hard(Resource::RLIMIT_NPROC),
        }
    }

    fn for_test(&self, memory: Option<u64>, suite: &Suite) -> Rlimits {
        let o = &suite.options;
        let cap = |res, want: Option<u64>, extra: u64, hard: u64| {
            want.map(|w| (res, w.min(hard), w.saturating_add(extra).min(hard)))
        };
        // CPU: SIGXCPU at the soft limit, SIGKILL one second later.
        let cpu = o
            .test_cpu
            .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
        Rlimits {
            entries: [
                cap(Resource::RLIMIT_AS, memory, 0, self.address_space),
                cap(Resource::RLIMIT_CPU, cpu, 1, self.cpu),
                cap(Resource::RLIMIT_NOFILE, o.test_nofile, 0, self.nofile),
                cap(Resource::RLIMIT_NPROC, o.test_nproc, 0, self.nproc),
            ],
        }
    }
}

/// A test that has been started and not yet completed.
struct Running {
    idx: usize,
    child: spawn::Child,
    started: Instant,
    started_at: SystemTime,
    timeout: Duration,
    deadline: Instant,
    /// Set once SIGTERM went to the group: when SIGKILL follows.
    kill_at: Option<Instant>,
    killed: bool,
    timed_out: bool,
    cancelled: bool,
    /// One message per output reader when it reaches end-of-file.
    readers_done: mpsc::Receiver<()>,
}

struct Runner<'a> {
    suite: &'a Suite,
    tier: Option<Tier>,
    tests: Vec<TestCase>,
    sched: Scheduler,
    workers: usize,
    cancel: Option<&'a Latch>,
    results: Vec<Option<TestReport>>,
    running: Vec<Running>,
    stop: Option<Stop>,
    token: String,
    label: String,
    out_dir: PathBuf,
    cp_path: PathBuf,
    cp: Checkpoint,
    cp_writer: checkpoint::Writer,
    sampler: Option<Sampler>,
    next_sample: Instant,
    hard: HardLimits,
    max_running: usize,
    unattributed: Vec<i32>,
}

/// Runs the planned suite (see the module header) and reports.
pub fn run(suite: &Suite, plan: Plan, cancel: Option<&Latch>) -> Result<SuiteOutcome> {
    let started_at = SystemTime::now();
    let started = Instant::now();
    let out_dir = suite.report_dir.join("output");
    // The captured output describes the tests and never decides them: a
    // directory that cannot be made (a full disk) is said, and the tests
    // run with their output in the log only (see `create_output`).
    if let Err(e) = std::fs::create_dir_all(&out_dir) {
        crate::log::write_failed(&output_files(&out_dir), &anyhow::Error::from(e));
    }
    let n = plan.tests.len();
    let plan_left_out = plan.left_out.len();
    // The order of the report: what --list showed.
    let planned = plan.scheduler.planned_order();
    let cp_path = checkpoint::path(&suite.report_dir, plan.tier.map(|t| t.as_str()));
    let sampler = suite.options.self_protect.then(|| {
        Sampler::new(
            &suite.host.proc_dir,
            protect::Limits {
                cpu: suite.options.cpu_limit,
                mem: suite.options.mem_limit,
            },
        )
    });
    let mut r = Runner {
        suite,
        tier: plan.tier,
        tests: plan.tests,
        sched: plan.scheduler,
        workers: plan.workers,
        cancel,
        results: vec![None; n],
        running: Vec::new(),
        stop: None,
        token: suite_token(),
        label: containers::label(&suite.run_id),
        out_dir,
        cp_writer: checkpoint::Writer::start(cp_path.clone())?,
        cp_path,
        cp: Checkpoint {
            run_id: suite.run_id.clone(),
            git_ref: suite.git_ref.clone(),
            tier: plan.tier.map(|t| t.as_str().to_string()),
            passed: Vec::new(),
            updated: String::new(),
        },
        sampler,
        next_sample: Instant::now(),
        hard: HardLimits::read(),
        max_running: 0,
        unattributed: Vec::new(),
    };
    let tier_words = r.tier.map(|t| format!(" for tier {t}")).unwrap_or_default();
    if n == 0 {
        say!("no test selected{tier_words}");
    } else {
        say!(
            "running {n} test(s){tier_words} ({} left out by the filters), {} at a time",
            plan.left_out.len(),
            r.workers
        );
    }
    r.resume();
    r.save_checkpoint();

    let driven = r.drive();
    if let Err(e) = &driven {
        say!("test runner error: {e:#}; ending the running tests");
        r.abort_running();
    }
    r.sweep_leftovers();
    match containers::remove_labelled(suite.host.docker.as_ref(), &r.label, suite.grace) {
        Ok(0) => {}
        Ok(k) => say!("removed {k} container(s) labelled {}", r.label),
        Err(e) => say!(
            "container cleanup for label {} failed (not fatal): {e:#}",
            r.label
        ),
    }
    r.fill_missing("not run: the test runner failed");
    r.cp_writer.flush();

    let tests: Vec<TestReport> = r.results.iter().flatten().cloned().collect();
    let (passed, failed, skipped) = report::counts(&tests);
    let exit_code = match &r.stop {
        Some(Stop::Signal(code)) => *code,
        Some(Stop::SelfProtect(_)) => crate::exit::SELF_PROTECT,
        _ if failed > 0 => crate::exit::TESTS_FAILED,
        _ => crate::exit::OK,
    };
    let mut by_index: HashMap<usize, TestReport> = r
        .results
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.clone().map(|t| (i, t)))
        .collect();
    let mut ordered: Vec<TestReport> = planned.iter().filter_map(|i| by_index.remove(i)).collect();
    let mut rest: Vec<(usize, TestReport)> = by_index.into_iter().collect();
    rest.sort_by_key(|(i, _)| *i);
    ordered.extend(rest.into_iter().map(|(_, t)| t));
    let rep = Report {
        run_id: suite.run_id.clone(),
        git_ref: suite.git_ref.clone(),
        tier: r.tier,
        started: crate::log::timestamp(started_at),
        finished: crate::log::timestamp(SystemTime::now()),
        duration_ms: started.elapsed().as_millis() as u64,
        exit_code,
        stopped: r.stop.as_ref().map(Stop::kind),
        stop_reason: r.stop.as_ref().map(Stop::describe),
        workers: r.max_running,
        passed,
        failed,
        skipped,
        leaked_unattributed: r.unattributed.clone(),
        tests: ordered,
    };
    let report_dir = &suite.report_dir;
    let tails = |t: &TestReport| Tails {
        stdout: t
            .stdout
            .as_deref()
            .map(|p| tail(&report_dir.join(p)))
            .unwrap_or_default(),
        stderr: t
            .stderr
            .as_deref()
            .map(|p| tail(&report_dir.join(p)))
            .unwrap_or_default(),
    };
    let classname = super::junit::classname(suite.recipe.as_deref(), r.tier);
    let written = report::write(report_dir, &rep, &classname, &tails);
    let shown = std::path::absolute(report_dir).unwrap_or_else(|_| report_dir.clone());
    for line in report::summary_lines(&rep, &shown) {
        say!("{line}");
    }
    driven?;
    // The reports describe the verdict; they never decide it. A full disk
    // that keeps them from being written is said (once per directory), and
    // the suite's exit code stands (SPEC section 1).
    if let Err(e) = written {
        crate::log::write_failed(
            &format!("the reports in {} (the verdict is kept)", shown.display()),
            &e,
        );
    }
    Ok(SuiteOutcome {
        exit_code,
        passed,
        failed,
        skipped,
        selected: n,
        discovered: n + plan_left_out,
    })
}

/// A marker unique to this suite in this process and host.
fn suite_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The last [`TAIL_BYTES`] of a file, lossily decoded.
fn tail(path: &Path) -> String {
    use std::io::Seek;
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > TAIL_BYTES {
        let _ = f.seek(std::io::SeekFrom::Start(len - TAIL_BYTES));
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

impl Runner<'_> {
    fn drive(&mut self) -> Result<()> {
        loop {
            self.check_cancel();
            self.start_ready();
            if let Some(stop) = self.stop.clone() {
                let why = format!("not started: {}", stop.describe());
                for i in self.sched.skip_pending() {
                    self.record_skipped(i, why.clone());
                }
            }
            if self.running.is_empty() {
                if !self.sched.is_done() {
                    // Cannot happen after the cycle check; never spin on it.
                    for i in self.sched.skip_pending() {
                        self.record_skipped(
                            i,
                            "not started: its dependencies never became ready".into(),
                        );
                    }
                }
                return Ok(());
            }
            self.wait()?;
            self.service()?;
            if self.stop.is_none() && self.sampler.is_some() && Instant::now() >= self.next_sample {
                self.protect_check();
            }
        }
    }

    fn check_cancel(&mut self) {
        if self.stop.is_none() && self.cancel.is_some_and(|c| c.is_set()) {
            let code = crate::lifetime::funnel()
                .and_then(|f| f.requested())
                .unwrap_or(crate::exit::SIGTERM);
            self.begin_stop(Stop::Signal(code));
        }
    }

    /// Starts ready tests up to the worker count.
    fn start_ready(&mut self) {
        while self.stop.is_none() && self.running.len() < self.workers {
            if self.sampler.is_some() && self.protect_check() {
                break;
            }
            let Some(i) = self.sched.next_ready() else {
                break;
            };
            match self.start(i) {
                Ok(run) => {
                    self.running.push(run);
                    self.max_running = self.max_running.max(self.running.len());
                }
                Err(e) => {
                    let name = self.tests[i].name.clone();
                    say!("{name}: could not start: {e:#}");
                    let mut rep = self.base_report(i);
                    rep.result = Outcome::Failed;
                    rep.reason = Some(format!("could not start: {e:#}"));
                    rep.started = Some(crate::log::timestamp(SystemTime::now()));
                    self.results[i] = Some(rep);
                    self.after_finish(i, Outcome::Failed);
                }
            }
        }
    }

    /// Takes a self-protection reading; true when it tripped (the suite is
    /// then stopping).
    fn protect_check(&mut self) -> bool {
        let Some(sampler) = self.sampler.as_mut() else {
            return false;
        };
        self.next_sample = Instant::now() + SAMPLE_EVERY;
        match sampler.check() {
            Verdict::Fine => false,
            Verdict::Trip(why) => {
                say!("self-protection: {why}: checkpointing and stopping the suite");
                self.save_checkpoint();
                self.cp_writer.flush();
                self.begin_stop(Stop::SelfProtect(why));
                true
            }
        }
    }

    /// Stops scheduling and sends SIGTERM to every running test's group;
    /// SIGKILL follows after the grace.
    fn begin_stop(&mut self, stop: Stop) {
        if self.stop.is_some() {
            return;
        }
        let now = Instant::now();
        let words = stop.describe();
        if !self.running.is_empty() {
            say!(
                "{words}: terminating {} running test(s) (SIGTERM, then SIGKILL after {})",
                self.running.len(),
                human(self.suite.grace)
            );
        } else {
            say!("{words}: no more tests are started");
        }
        for r in &mut self.running {
            // A test that has already exited ran to its end: it is judged
            // on its own status, not cancelled.
            if r.child.try_reap().unwrap_or(false) {
                continue;
            }
            if r.kill_at.is_none() {
                r.cancelled = true;
                r.child.signal_group(Signal::SIGTERM);
                r.kill_at = Some(now + self.suite.grace);
            }
        }
        self.stop = Some(stop);
    }

    fn start(&mut self, i: usize) -> Result<Running> {
        let t = &self.tests[i];
        let suite = self.suite;
        let timeout = t.meta.timeout.unwrap_or(suite.options.test_timeout);
        let limits = self
            .hard
            .for_test(t.meta.memory.or(suite.options.test_memory), suite);
        let stdout_file = create_output(&self.out_dir, &format!("{}.stdout", t.name))?;
        let stderr_file = create_output(&self.out_dir, &format!("{}.stderr", t.name))?;
        let (out_r, out_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).context("failed to create a pipe")?;
        let (err_r, err_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).context("failed to create a pipe")?;
        let mut cmd = Command::new(&t.path);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out_w))
            .stderr(Stdio::from(err_w))
            .env("CCCI_RUN_ID", &suite.run_id)
            .env("CCCI_CONTAINER_LABEL", &self.label)
            .env(TEST_NAME, &t.name)
            .env(SUITE_MARK, &self.token);
        if let Some(tier) = self.tier {
            cmd.env("CCCI_TIER", tier.as_str());
        }
        for (k, v) in &suite.env {
            cmd.env(k, v);
        }
        // SAFETY: the closure only calls setrlimit, a plain system call, on
        // values computed before the fork. It runs before the pre_exec that
        // spawn::spawn installs (own group, PDEATHSIG, close-on-exec).
        unsafe {
            cmd.pre_exec(move || limits.apply());
        }
        let spawned = spawn::spawn(&mut cmd, Isolation::Group);
        // Drops our copies of the pipes' write ends: the readers then see
        // end-of-file once the test and everything it started are gone.
        drop(cmd);
        let child = spawned?;
        let started = Instant::now();
        let (tx, rx) = mpsc::channel();
        spawn_reader(out_r, stdout_file, format!("[{}] ", t.name), tx.clone())?;
        spawn_reader(err_r, stderr_file, format!("[{} stderr] ", t.name), tx)?;
        if suite.options.verbose {
            say!(
                "{}: started, pid {}, timeout {}, {}",
                t.name,
                child.pid,
                human(timeout),
                limits.describe()
            );
        } else {
            say!("{}: started", t.name);
        }
        Ok(Running {
            idx: i,
            child,
            started,
            started_at: SystemTime::now(),
            timeout,
            deadline: started + timeout,
            kill_at: None,
            killed: false,
            timed_out: false,
            cancelled: false,
            readers_done: rx,
        })
    }

    /// Waits until a running test exits, the cancel latch is set, or the
    /// next timer is due.
    fn wait(&mut self) -> Result<()> {
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        for r in &self.running {
            match r.kill_at {
                Some(k) if !r.killed => at(k),
                Some(_) => {}
                None => at(r.deadline),
            }
        }
        if self.sampler.is_some() && self.stop.is_none() {
            at(self.next_sample);
        }
        let timeout = latch::timeout_until(next);
        let mut fds: Vec<PollFd> = self
            .running
            .iter()
            .map(|r| PollFd::new(r.child.pidfd(), PollFlags::POLLIN))
            .collect();
        if self.stop.is_none() {
            if let Some(c) = self.cancel {
                fds.push(PollFd::new(c.fd(), PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => Ok(()),
            Err(e) => Err(e).context("poll on the running tests failed"),
        }
    }

    /// Reaps exited tests and escalates timeouts and stops.
    fn service(&mut self) -> Result<()> {
        let mut k = 0;
        while k < self.running.len() {
            if self.running[k].child.try_reap()? {
                let r = self.running.remove(k);
                self.complete(r);
                continue;
            }
            let now = Instant::now();
            let grace = self.suite.grace;
            let name = &self.tests[self.running[k].idx].name;
            let r = &mut self.running[k];
            match r.kill_at {
                Some(at) if !r.killed && now >= at => {
                    say!(
                        "{name}: still running {} after SIGTERM: SIGKILL to its process group",
                        human(grace)
                    );
                    r.child.signal_group(Signal::SIGKILL);
                    r.killed = true;
                }
                None if now >= r.deadline => {
                    say!(
                        "{name}: timed out after {}: SIGTERM to its process group",
                        human(r.timeout)
                    );
                    r.timed_out = true;
                    r.child.signal_group(Signal::SIGTERM);
                    r.kill_at = Some(now + grace);
                }
                _ => {}
            }
            k += 1;
        }
        Ok(())
    }

    /// A test's leader has been reaped: end its leftovers, collect its
    /// output, record the result.
    fn complete(&mut self, r: Running) {
        let i = r.idx;
        let name = self.tests[i].name.clone();
        let duration = r.started.elapsed();
        let status = r.child.status();
        let usage = r.child.usage().unwrap_or_default();
        let leaked = self.end_leftovers(r.child.pid.as_raw(), &name);
        let deadline = Instant::now() + READER_BOUND;
        for _ in 0..2 {
            let left = deadline.saturating_duration_since(Instant::now());
            if r.readers_done.recv_timeout(left).is_err() {
                say!("{name}: its output is still held open by a process outside the runner's reach; not waiting for it");
                break;
            }
        }
        let success = status.is_some_and(|s| s.success());
        let (result, reason) = if r.timed_out {
            let how = if r.killed {
                ", killed after the grace"
            } else {
                ""
            };
            (
                Outcome::TimedOut,
                Some(format!("timed out after {}{how}", human(r.timeout))),
            )
        } else if r.cancelled {
            let why = self.stop.as_ref().map(Stop::describe).unwrap_or_default();
            (Outcome::Cancelled, Some(format!("terminated: {why}")))
        } else if success {
            (Outcome::Passed, None)
        } else {
            let st = status.map_or("no status".to_string(), |s| s.to_string());
            (Outcome::Failed, Some(st))
        };
        let mut rep = self.base_report(i);
        rep.result = result;
        rep.reason = reason;
        rep.status = status.map(|s| s.to_string());
        rep.exit_code = status.map(|s| s.code());
        rep.leaky = !leaked.is_empty();
        rep.leaked_pids = leaked.clone();
        rep.started = Some(crate::log::timestamp(r.started_at));
        rep.duration_ms = duration.as_millis() as u64;
        rep.peak_rss_bytes = Some(usage.max_rss);
        rep.cpu_ms = Some(usage.cpu.as_millis() as u64);
        rep.stdout = Some(format!("output/{name}.stdout"));
        rep.stderr = Some(format!("output/{name}.stderr"));
        let mut line = format!("{name}: {} in {}", result.as_str(), human(duration));
        if let Some(why) = &rep.reason {
            line.push_str(&format!(" ({why})"));
        }
        if !leaked.is_empty() {
            line.push_str(&format!(
                "; leaky: killed {} leftover process(es) {leaked:?}",
                leaked.len()
            ));
        }
        say!("{line}");
        self.results[i] = Some(rep);
        self.after_finish(i, result);
    }

    fn after_finish(&mut self, i: usize, result: Outcome) {
        let passed = result == Outcome::Passed;
        for (d, why) in self.sched.finish(i, passed) {
            say!("{}: skipped: {why}", self.tests[d].name);
            self.record_skipped(d, why);
        }
        if passed {
            self.cp.passed.push(self.tests[i].name.clone());
            self.save_checkpoint();
        }
        if result.is_failure() && self.suite.options.fail_fast {
            let name = self.tests[i].name.clone();
            self.begin_stop(Stop::FailFast(name));
        }
    }

    fn record_skipped(&mut self, i: usize, why: String) {
        let mut rep = self.base_report(i);
        rep.result = Outcome::Skipped;
        rep.reason = Some(why);
        self.results[i] = Some(rep);
    }

    fn fill_missing(&mut self, why: &str) {
        for i in 0..self.results.len() {
            if self.results[i].is_none() {
                self.record_skipped(i, why.to_string());
            }
        }
    }

    fn base_report(&self, i: usize) -> TestReport {
        let t = &self.tests[i];
        let o = &self.suite.options;
        TestReport {
            name: t.name.clone(),
            path: t.path.display().to_string(),
            file: t.file.clone(),
            result: Outcome::Skipped,
            reason: None,
            status: None,
            exit_code: None,
            leaky: false,
            leaked_pids: Vec::new(),
            started: None,
            duration_ms: 0,
            peak_rss_bytes: None,
            cpu_ms: None,
            stdout: None,
            stderr: None,
            level: t.meta.level,
            tiers: t.meta.tiers.clone(),
            tags: t.meta.tags.clone(),
            priority: t.meta.priority,
            depends_on: t.meta.depends_on.clone(),
            timeout_ms: t.meta.timeout.unwrap_or(o.test_timeout).as_millis() as u64,
            memory_bytes: t.meta.memory.or(o.test_memory),
        }
    }

    /// `--resume`: tests the checkpoint says passed for this run id, ref and
    /// tier are not run again.
    fn resume(&mut self) {
        if !self.suite.options.resume {
            return;
        }
        let path = self.cp_path.display().to_string();
        let cp = match checkpoint::load(&self.cp_path) {
            Ok(Some(cp)) => cp,
            Ok(None) => {
                say!("--resume: no checkpoint at {path}: running every test");
                return;
            }
            Err(e) => {
                say!("--resume: {e:#}: ignored, running every test");
                return;
            }
        };
        let tier = self.tier.map(|t| t.as_str());
        match checkpoint::decide(&cp, &self.suite.run_id, &self.suite.git_ref, tier) {
            Resume::Ignore(why) => say!("--resume: checkpoint {path} ignored: {why}"),
            Resume::Use(passed) => {
                let done: HashSet<&str> = passed.iter().map(String::as_str).collect();
                let mut k = 0;
                for i in 0..self.tests.len() {
                    if done.contains(self.tests[i].name.as_str()) {
                        self.sched.passed_earlier(i);
                        self.record_skipped(
                            i,
                            "passed earlier in this run (resumed from the checkpoint)".into(),
                        );
                        k += 1;
                    }
                }
                say!(
                    "--resume: {k} test(s) already passed in run {}; running the rest",
                    cp.run_id
                );
                self.cp.passed = passed;
            }
        }
    }

    /// Queues the checkpoint for the writer thread; a failed write is logged
    /// there (the tests go on; only a later --resume loses).
    fn save_checkpoint(&mut self) {
        self.cp.updated = crate::log::timestamp(SystemTime::now());
        self.cp_writer.save(&self.cp);
    }

    /// After an internal error: every running test's group gets SIGKILL at
    /// once and is reaped (no grace: the runner cannot keep its promises).
    fn abort_running(&mut self) {
        for mut r in std::mem::take(&mut self.running) {
            r.child.signal_group(Signal::SIGKILL);
            let _ = r.child.wait(None, Some(Instant::now() + READER_BOUND));
            let name = self.tests[r.idx].name.clone();
            let leaked = self.end_leftovers(r.child.pid.as_raw(), &name);
            let mut rep = self.base_report(r.idx);
            rep.result = Outcome::Cancelled;
            rep.reason = Some("terminated: the test runner failed".into());
            rep.leaked_pids = leaked;
            self.results[r.idx] = Some(rep);
        }
    }

    fn running_leaders(&self) -> HashSet<i32> {
        self.running.iter().map(|r| r.child.pid.as_raw()).collect()
    }

    /// Ends what test `name` (leader `pgid`, already reaped) left behind;
    /// returns their pids.
    fn end_leftovers(&self, pgid: i32, name: &str) -> Vec<i32> {
        let leaders = self.running_leaders();
        // Fast path, no /proc scan: the group is empty and we have no child
        // besides the running tests' leaders.
        let group_empty = killpg(Pid::from_raw(pgid), None) == Err(Errno::ESRCH);
        let strays = own_children().map(|c| c.iter().any(|p| !leaders.contains(p)));
        if group_empty && strays == Some(false) {
            return Vec::new();
        }
        let me = std::process::id() as i32;
        let token = self.token.as_str();
        let found = kill::escalate(self.suite.grace, |procs| {
            let roots = procs.iter().filter(|p| {
                p.pgid == pgid
                    || (p.ppid == me
                        && !p.zombie
                        && !leaders.contains(&p.pid)
                        && test_of(p.pid, token).as_deref() == Some(name))
            });
            procfs::with_descendants(procs, roots.map(|p| p.pid))
        });
        found.into_iter().collect()
    }

    /// End of suite: anything still alive that carries this suite's mark
    /// (left by a test after its own check, or by a test whose check could
    /// not see it) is ended; it is blamed on the test it names.
    fn sweep_leftovers(&mut self) {
        let me = std::process::id() as i32;
        let token = self.token.clone();
        let mut names: HashMap<i32, String> = HashMap::new();
        let found = kill::escalate(self.suite.grace, |procs| {
            let mine: Vec<i32> = procfs::proc_descendants(procs, me)
                .into_iter()
                .filter(|pid| match test_of(*pid, &token) {
                    Some(n) => {
                        names.insert(*pid, n);
                        true
                    }
                    None => false,
                })
                .collect();
            procfs::with_descendants(procs, mine.into_iter())
        });
        for pid in found {
            let idx = names
                .get(&pid)
                .and_then(|n| self.tests.iter().position(|t| &t.name == n));
            match idx.and_then(|i| self.results[i].as_mut()) {
                Some(rep) => {
                    say!(
                        "{}: leftover process {pid} killed at the end of the suite",
                        rep.name
                    );
                    rep.leaky = true;
                    rep.leaked_pids.push(pid);
                }
                None => self.unattributed.push(pid),
            }
        }
        if !self.unattributed.is_empty() {
            say!(
                "killed {} leftover process(es) of this suite: {:?}",
                self.unattributed.len(),
                self.unattributed
            );
        }
    }
}

/// How a failed write of the captured output is named (one name for the
/// whole directory, so a full disk is said once, not twice per test).
fn output_files(out_dir: &Path) -> String {
    format!(
        "the test output files in {} (the tests run; their output is in the log)",
        out_dir.display()
    )
}

/// The file a test's output is copied to. One that cannot be created (a
/// full disk) is said once and replaced by /dev/null: the output still
/// reaches the log line by line, and a test never fails for want of a
/// place to copy its output to.
fn create_output(out_dir: &Path, name: &str) -> Result<File> {
    // std opens with O_CLOEXEC: the file never reaches a test by inheritance.
    let path = out_dir.join(name);
    match File::create(&path) {
        Ok(f) => Ok(f),
        Err(e) => {
            let e = anyhow::Error::from(e).context(format!("failed to create {}", path.display()));
            crate::log::write_failed(&output_files(out_dir), &e);
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .context("failed to open /dev/null for a test's output")
        }
    }
}

/// Copies a test's output pipe to its file and to the log, line by line.
fn spawn_reader(fd: OwnedFd, mut file: File, prefix: String, done: mpsc::Sender<()>) -> Result<()> {
    std::thread::Builder::new()
        .name("test-output".into())
        .spawn(move || {
            let mut pipe = File::from(fd);
            let mut chunk = [0u8; 8192];
            let mut pending: Vec<u8> = Vec::new();
            let show = |bytes: &[u8]| {
                let text = String::from_utf8_lossy(bytes);
                say!("{prefix}{}", text.trim_end_matches(['\n', '\r']));
            };
            loop {
                let n = match pipe.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let _ = file.write_all(&chunk[..n]);
                pending.extend_from_slice(&chunk[..n]);
                while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=pos).collect();
                    show(&line);
                }
                // A very long line is shown in pieces rather than held.
                if pending.len() >= chunk.len() {
                    show(&pending);
                    pending.clear();
                }
            }
            if !pending.is_empty() {
                show(&pending);
            }
            let _ = done.send(());
        })
        .context("failed to start an output reader thread")?;
    Ok(())
}

/// Our direct children, from `/proc/self/task/*/children`; None when the
/// kernel does not provide those files. A thread that ends during the scan
/// (an output reader) is skipped: its children, if it had any, pass to a
/// thread that is still there.
fn own_children() -> Option<Vec<i32>> {
    let me = std::process::id().to_string();
    let main = std::fs::read_to_string(format!("/proc/self/task/{me}/children")).ok()?;
    let mut out: Vec<i32> = main
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        if task.file_name().to_str() == Some(me.as_str()) {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    Some(out)
}

/// The test a process belongs to, if it carries this suite's mark: read
/// from its environment, which every process of a test inherits unless it
/// deliberately clears it.
fn test_of(pid: i32, token: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let mut marked = false;
    let mut name = None;
    for var in env.split(|&b| b == 0) {
        if let Some(v) = var.strip_prefix(format!("{SUITE_MARK}=").as_bytes()) {
            marked = v == token.as_bytes();
        } else if let Some(v) = var.strip_prefix(format!("{TEST_NAME}=").as_bytes()) {
            name = Some(String::from_utf8_lossy(v).into_owned());
        }
    }
    if marked {
        name
    } else {
        None
    }
}
