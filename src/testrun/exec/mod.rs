//! Running a planned suite: the only part of the test runner that starts,
//! signals and reaps processes. It runs on the caller's thread (the main
//! thread: a test's PDEATHSIG fires when the thread that spawned it ends)
//! as one event loop: start ready tests up to the worker count, then `poll`
//! the running tests' pidfds, the cancel latch and the next timer (a
//! timeout, the end of a grace period, a self-protection reading).
//!
//! Each test is a small state machine: running → (timeout, or a stop of the
//! suite: SIGTERM to its process group) terminating → (grace expired:
//! SIGKILL to the group) killed → exited; the terminating state holds the
//! test's `sys::kill::Escalation`, which sends both signals, and the loop
//! only decides when. After the test's leader has exited, whatever it left
//! behind is found and ended (TERM, grace, KILL: `sys::kill::escalate`)
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
//! Output: each test's stdout and stderr are pipes read by the suite's one
//! output pump thread, which writes the bytes to
//! `output/<name>.stdout|.stderr` in the report directory and logs each
//! line with the test's name as prefix.
//!
//! Retries: a test whose attempt failed (failed, timed out, could not
//! start) while the suite is not stopping, and that has reruns left (its
//! header's `retries`, else `--retries`), is queued to run again before any
//! new test starts; the scheduler still sees it running, so its dependents
//! wait for its last attempt and fail-fast reacts to that attempt only.
//! Each failed attempt's output is kept as `NAME.attempt-K.stdout|.stderr`.
//! A stop drains the queue: a queued test ends with the failure it had.
//!
//! Own cases: each test gets `CCCI_JUNIT_OUT`, a path in a directory of
//! its own that holds no earlier file; when it ends, the JUnit it wrote
//! there is read (`super::cases`) and can turn a pass into a failure.
//!
//! The parts: this file is the event loop; `unit` a test's state and its
//! limits, `leftovers` finding and ending what a test left behind, `output`
//! the capture of its output.

mod leftovers;
mod output;
mod unit;

use leftovers::suite_token;
pub(crate) use leftovers::{SUITE_MARK, TEST_NAME};
use output::{output_files, tail, Pump, StreamEnd, READER_BOUND};
use unit::{Ending, HardLimits, Running, Stop, UnitState};

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags};

use super::cases;
use super::checkpoint::{self, Checkpoint, Journal, Resume};
use super::containers;
use super::meta::Tier;
use super::protect::{self, Sampler, Verdict};
use super::report::{self, Attempt, Outcome, Report, Tails, TestReport};
use super::select::Scheduler;
use super::{Plan, Suite, SuiteOutcome, TestCase};
use crate::say;
use crate::sys::kill::{Escalation, Target};
use crate::sys::latch::{self, Latch};
use crate::sys::spawn;
use crate::sys::spawn::Isolation;
use crate::sys::spec::{Environ, Spec, Stdio};
use crate::units::human;

/// Between two self-protection readings while tests run.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

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
    /// Every test's environment but its own name and JUnit path, built
    /// once for the suite (`suite_env`).
    env: Environ,
    out_dir: PathBuf,
    /// The tier's checkpoint journal; `None` before the suite starts and
    /// after a write failed (said once: the tests go on, only a later
    /// `--resume` loses).
    journal: Option<Journal>,
    sampler: Option<Sampler>,
    next_sample: Instant,
    hard: HardLimits,
    /// Copies every test's output (one thread for the suite).
    output: Pump,
    max_running: usize,
    unattributed: Vec<i32>,
    /// Tests whose failed attempt is to be run again, in the order they
    /// failed; `failed_last` holds that attempt's report until it does.
    retry: VecDeque<usize>,
    failed_last: HashMap<usize, TestReport>,
    /// Each test's earlier failed attempts, oldest first.
    earlier: Vec<Vec<Attempt>>,
    /// Files in `CCCI_ARTIFACTS` already claimed by a test.
    claimed: HashSet<String>,
}

/// Runs the planned suite (see the module header) and reports.
pub(crate) fn run(suite: &Suite, plan: Plan, cancel: Option<&Latch>) -> Result<SuiteOutcome> {
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
    let sampler = suite.options.self_protect.then(|| {
        Sampler::new(
            &suite.host.proc_dir,
            protect::Limits {
                cpu: suite.options.cpu_limit,
                mem: suite.options.mem_limit,
            },
        )
    });
    let token = suite_token();
    let label = containers::label(&suite.run_id);
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
        env: suite_env(suite, plan.tier, &token, &label),
        token,
        label,
        out_dir,
        journal: None,
        sampler,
        next_sample: Instant::now(),
        hard: HardLimits::read(),
        output: Pump::start()?,
        max_running: 0,
        unattributed: Vec::new(),
        retry: VecDeque::new(),
        failed_last: HashMap::new(),
        earlier: vec![Vec::new(); n],
        claimed: HashSet::new(),
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
    let resumed = r.resume();
    r.start_journal(resumed);
    if let Some(t) = suite.builtin.iter().find(|t| t.result.is_failure()) {
        say!(
            "the built-in test `{}` failed: the tier's own tests are not started",
            t.name
        );
        r.stop = Some(Stop::Builtin(t.name.clone()));
    }

    let driven = r.drive();
    if let Err(e) = &driven {
        say!("test runner error: {e:#}; ending the running tests");
        r.abort_running();
    }
    r.sweep_leftovers();
    // Stopped by a signal under `run`: the run's teardown removes the
    // labelled containers beside the app's (see `Suite`), and the suite
    // says so in its outcome. On any other end, here and now.
    let containers_left = suite.leave_containers_on_signal
        && driven.is_ok()
        && matches!(r.stop, Some(Stop::Signal(_)));
    if containers_left {
        say!(
            "containers labelled {} are removed with the teardown",
            r.label
        );
    } else {
        let removed =
            containers::remove_labelled(suite.host.docker.as_ref(), &r.label, suite.grace, None);
        containers::say_removed(&r.label, &removed);
    }
    r.fill_missing("not run: the test runner failed");
    r.sync_journal();

    // The built-in tests (the floor) come first and count like any other.
    let tests: Vec<TestReport> = suite
        .builtin
        .iter()
        .cloned()
        .chain(r.results.iter().flatten().cloned())
        .collect();
    let (passed, failed, skipped) = report::counts(&tests);
    let flaky = tests.iter().filter(|t| t.flaky).count();
    let (cases_passed, cases_failed, cases_skipped) =
        cases::counts(tests.iter().flat_map(|t| &t.cases));
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
    let mut ordered: Vec<TestReport> = suite.builtin.clone();
    ordered.extend(planned.iter().filter_map(|i| by_index.remove(i)));
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
        flaky,
        cases_passed,
        cases_failed,
        cases_skipped,
        leaked_unattributed: r.unattributed.clone(),
        tests: ordered,
    };
    let report_dir = &suite.report_dir;
    let tail_of = |p: &Option<String>, written: Option<u64>| {
        p.as_deref()
            .map(|p| tail(&report_dir.join(p), p, written))
            .unwrap_or_default()
    };
    let tails = |t: &TestReport| Tails {
        stdout: tail_of(&t.stdout, t.stdout_bytes),
        stderr: tail_of(&t.stderr, t.stderr_bytes),
        attempts: t
            .failed_attempts
            .iter()
            .map(|a| Tails {
                stdout: tail_of(&a.stdout, a.stdout_bytes),
                stderr: tail_of(&a.stderr, a.stderr_bytes),
                attempts: Vec::new(),
            })
            .collect(),
    };
    let classname = super::junit::classname(suite.recipe.as_deref(), r.tier);
    let written = report::write(report_dir, &rep)
        .and_then(|()| super::junit::write_tier(report_dir, &rep, &classname, &tails));
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
        flaky,
        skipped,
        cases_passed,
        cases_failed,
        cases_skipped,
        selected: n,
        discovered: n + plan_left_out,
        containers_left,
    })
}

/// The environment every test of the suite starts with: the runner's own,
/// the suite's marks, then the suite's extra variables, which win over the
/// runner's CCCI_* ones. Each test adds its name and JUnit path.
fn suite_env(suite: &Suite, tier: Option<Tier>, token: &str, label: &str) -> Environ {
    let mut env = Environ::inherited();
    env.set("CCCI_RUN_ID", &suite.run_id);
    env.set("CCCI_CONTAINER_LABEL", label);
    env.set(SUITE_MARK, token);
    if let Some(tier) = tier {
        env.set("CCCI_TIER", tier.as_str());
    }
    for (k, v) in &suite.env {
        env.set(k, v);
    }
    env
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
            let i = match self.retry.pop_front() {
                Some(i) => {
                    if let Some(failed) = self.failed_last.remove(&i) {
                        self.earlier[i].push(Attempt::of(&failed));
                    }
                    i
                }
                None => match self.sched.next_ready() {
                    Some(i) => i,
                    None => break,
                },
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
                    self.attempt_done(i, rep, None);
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
                self.sync_journal();
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
            if r.state == UnitState::Running {
                r.state = UnitState::Terminating {
                    why: Ending::Stopped,
                    end: Escalation::start(Target::Group(r.child.pid), now + self.suite.grace),
                };
            }
        }
        self.stop = Some(stop);
        // A queued rerun is not started: the test ends with its failure.
        while let Some(i) = self.retry.pop_front() {
            if let Some(failed) = self.failed_last.remove(&i) {
                self.finish_test(i, failed, None);
            }
        }
    }
    fn start(&mut self, i: usize) -> Result<Running> {
        let t = &self.tests[i];
        let suite = self.suite;
        let timeout = t.meta.timeout.unwrap_or(suite.options.test_timeout);
        let limits = self
            .hard
            .for_test(t.meta.memory.or(suite.options.test_memory), suite);
        let (out_r, out_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).context("failed to create a pipe")?;
        let (err_r, err_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).context("failed to create a pipe")?;
        let junit_out = self.junit_out(&t.name);
        let mut spec = Spec::new(&t.path, &self.env, Isolation::Group);
        spec.stdin(Stdio::Null)
            .stdout(Stdio::Fd(out_w.as_fd()))
            .stderr(Stdio::Fd(err_w.as_fd()));
        // The suite's own variables win over these (see `suite_env`).
        for (k, v) in [
            (TEST_NAME, t.name.as_ref()),
            (cases::ENV, junit_out.as_os_str()),
        ] {
            if !suite.env.iter().any(|(sk, _)| sk == k) {
                spec.env(k, v);
            }
        }
        limits.apply(&mut spec);
        // The test's start is read before it can run: the artifacts it
        // claims are the files written since (a test that writes one at
        // once could otherwise beat a clock read after the spawn).
        let (started, started_at) = (Instant::now(), SystemTime::now());
        let spawned = spawn::spawn(&spec);
        // Drops our copies of the pipes' write ends: the readers then see
        // end-of-file once the test and everything it started are gone.
        drop(spec);
        drop((out_w, err_w));
        let child = spawned?;
        let (tx, rx) = mpsc::channel();
        let out = &self.out_dir;
        let pump = &self.output;
        for (pipe, stream, prefix, done) in [
            (out_r, "stdout", format!("[{}] ", t.name), tx.clone()),
            (err_r, "stderr", format!("[{} stderr] ", t.name), tx),
        ] {
            let file = format!("{}.{stream}", t.name);
            pump.watch(
                pipe,
                out,
                file,
                prefix,
                suite.options.test_output_limit,
                done,
            )?;
        }
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
            started_at,
            timeout,
            deadline: started + timeout,
            state: UnitState::Running,
            readers_done: rx,
        })
    }
    /// Waits until a running test exits, the cancel latch is set, or the
    /// next timer is due.
    fn wait(&mut self) -> Result<()> {
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        for r in &self.running {
            if let Some(t) = r.state.next_timer(r.deadline) {
                at(t);
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
            match r.state {
                UnitState::Terminating { why, mut end } if end.due(now) => {
                    say!(
                        "{name}: still running {} after SIGTERM: SIGKILL to its process group",
                        human(grace)
                    );
                    end.kill();
                    r.state = UnitState::Killed { why };
                }
                UnitState::Running if now >= r.deadline => {
                    say!(
                        "{name}: timed out after {}: SIGTERM to its process group",
                        human(r.timeout)
                    );
                    r.state = UnitState::Terminating {
                        why: Ending::TimedOut,
                        end: Escalation::start(Target::Group(r.child.pid), now + grace),
                    };
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
        let mut ends: Vec<StreamEnd> = Vec::with_capacity(2);
        for _ in 0..2 {
            let left = deadline.saturating_duration_since(Instant::now());
            match r.readers_done.recv_timeout(left) {
                Ok(end) => ends.push(end),
                Err(_) => {
                    say!("{name}: its output is still held open by a process outside the runner's reach; not waiting for it");
                    break;
                }
            }
        }
        let written = |ext: &str| {
            ends.iter()
                .find(|e| e.file_name.ends_with(ext))
                .map(|e| e.bytes)
        };
        let success = status.is_some_and(|s| s.success());
        let (result, reason) = if r.state.ending() == Some(Ending::TimedOut) {
            let how = if matches!(r.state, UnitState::Killed { .. }) {
                ", killed after the grace"
            } else {
                ""
            };
            (
                Outcome::TimedOut,
                Some(format!("timed out after {}{how}", human(r.timeout))),
            )
        } else if r.state.ending() == Some(Ending::Stopped) {
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
        rep.stdout_bytes = written(".stdout");
        rep.stderr_bytes = written(".stderr");
        self.read_own_cases(&mut rep);
        rep.artifacts = self.claim_artifacts(r.started_at);
        let result = rep.result;
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
        self.attempt_done(i, rep, Some(line));
    }
    /// The path test `name` gets as `CCCI_JUNIT_OUT`, in a directory of
    /// its own made ready for it: a file an earlier run or attempt left
    /// there is removed, so a test that writes none is never judged by
    /// another's cases. A directory that cannot be made is said; the test
    /// still runs, and its own exit status decides it.
    fn junit_out(&self, name: &str) -> PathBuf {
        let path = cases::path(&self.suite.report_dir, name);
        let made = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            });
        if let Err(e) = made {
            say!(
                "warning: {name}: could not prepare its CCCI_JUNIT_OUT {}: {e}",
                path.display()
            );
        }
        path
    }
    /// The files in the suite's `CCCI_ARTIFACTS` (when it gives one)
    /// written since `since`, a test's start, that no test that ended
    /// before has claimed: what that test left there. Tests that run side
    /// by side share the directory; a file either wrote goes to the first
    /// to end.
    fn claim_artifacts(&mut self, since: SystemTime) -> Vec<String> {
        let Some((_, dir)) = self.suite.env.iter().find(|(k, _)| k == "CCCI_ARTIFACTS") else {
            return Vec::new();
        };
        let mut mine = Vec::new();
        for e in walkdir::WalkDir::new(dir)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .flatten()
        {
            let fresh = e
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .is_some_and(|t| t >= since);
            let path = e.path().display().to_string();
            if e.file_type().is_file() && fresh && self.claimed.insert(path.clone()) {
                mine.push(path);
            }
        }
        mine
    }
    /// Reads the JUnit the test wrote to its `CCCI_JUNIT_OUT` (see
    /// [`cases`]): its cases join its report; a failed case fails a test
    /// that exited 0, and so does a file that is not JUnit. A test that
    /// timed out or was cancelled keeps that verdict.
    fn read_own_cases(&self, rep: &mut TestReport) {
        let path = cases::path(&self.suite.report_dir, &rep.name);
        let name = rep.name.clone();
        match cases::read(&path) {
            cases::Found::Missing => {}
            cases::Found::Invalid(why) => {
                let why = format!(
                    "its {} ({}) is not valid JUnit: {why}",
                    cases::ENV,
                    path.display()
                );
                say!("{name}: {why}");
                rep.junit = Some(format!("{}/{name}/junit.xml", cases::DIR));
                match rep.result {
                    Outcome::Passed => {
                        rep.result = Outcome::Failed;
                        rep.reason = Some(why);
                    }
                    Outcome::Failed => {
                        let before = rep.reason.take().unwrap_or_default();
                        rep.reason = Some(format!("{before}; {why}"));
                    }
                    _ => {}
                }
            }
            cases::Found::Cases(raw) => {
                rep.junit = Some(format!("{}/{name}/junit.xml", cases::DIR));
                rep.cases = cases::reports(&rep.file, &raw);
                let (passed, failed, skipped) = cases::counts(&rep.cases);
                for c in rep.cases.iter().filter(|c| c.result.is_failure()) {
                    let what = c
                        .message
                        .as_deref()
                        .map_or_else(|| "no message".into(), report::first_line);
                    say!("{name}: case {} {}: {what}", c.name, c.result.as_str());
                }
                say!("{name}: cases: {passed} passed, {failed} failed, {skipped} skipped");
                if failed > 0 && rep.result == Outcome::Passed {
                    rep.result = Outcome::Failed;
                    rep.reason = Some(format!(
                        "{failed} of its {} case(s) failed, though it exited 0",
                        rep.cases.len()
                    ));
                }
            }
        }
    }
    /// An attempt of test `i` ended as `rep` says (and `line`, when given,
    /// announces it): queue a rerun when it failed, the suite is not
    /// stopping and reruns are left; otherwise the test is finished (see
    /// the module header).
    fn attempt_done(&mut self, i: usize, mut rep: TestReport, line: Option<String>) {
        let tried = self.earlier[i].len() as u32 + 1;
        rep.attempts = tried;
        if rep.result.is_failure() && self.stop.is_none() && tried <= rep.retries {
            if let Some(line) = line {
                say!("{line}");
            }
            self.keep_attempt_output(&mut rep, tried);
            say!(
                "{}: attempt {tried} of {} failed; running it again",
                rep.name,
                rep.retries + 1
            );
            self.failed_last.insert(i, rep);
            self.retry.push_back(i);
            return;
        }
        self.finish_test(i, rep, line);
    }
    /// Test `i` is finished with its last attempt `rep`: the earlier
    /// attempts join its report, a pass after failures is flaky. A pass is
    /// in the journal before `line` announces it, so whoever reads the
    /// line (a log watcher, an operator about to kill the runner) can count
    /// on `--resume` not running the test again.
    fn finish_test(&mut self, i: usize, mut rep: TestReport, line: Option<String>) {
        let earlier = std::mem::take(&mut self.earlier[i]);
        let mut leaked: Vec<i32> = earlier
            .iter()
            .flat_map(|a| a.leaked_pids.iter().copied())
            .collect();
        leaked.append(&mut rep.leaked_pids);
        rep.leaky = !leaked.is_empty();
        rep.leaked_pids = leaked;
        let mut flaky = None;
        if rep.result == Outcome::Passed && !earlier.is_empty() {
            rep.flaky = true;
            let mut why = format!(
                "flaky: failed {} time(s), passed on attempt {}",
                earlier.len(),
                rep.attempts
            );
            if self.suite.options.flaky_fails {
                why.push_str("; --flaky-fails makes that a failure");
                rep.result = Outcome::Failed;
            }
            flaky = Some(why);
        }
        if rep.result == Outcome::Passed {
            self.journal_pass(i);
        }
        if let Some(line) = line {
            say!("{line}");
        }
        if let Some(why) = flaky {
            say!("{}: {why}", rep.name);
            rep.reason = Some(why);
        }
        rep.failed_attempts = earlier;
        let result = rep.result;
        self.results[i] = Some(rep);
        self.after_finish(i, result);
    }
    /// Renames a failed attempt's output files to `NAME.attempt-K.*`, so
    /// the rerun's files do not overwrite them.
    fn keep_attempt_output(&self, rep: &mut TestReport, k: u32) {
        for (file, ext) in [(&mut rep.stdout, "stdout"), (&mut rep.stderr, "stderr")] {
            let Some(rel) = file.as_ref() else { continue };
            let kept = format!("output/{}.attempt-{k}.{ext}", rep.name);
            let dir = &self.suite.report_dir;
            match std::fs::rename(dir.join(rel), dir.join(&kept)) {
                Ok(()) => *file = Some(kept),
                Err(e) => {
                    // Not there (a full disk sent it to /dev/null) or not
                    // movable: the rerun overwrites it, so name none.
                    if e.kind() != std::io::ErrorKind::NotFound {
                        say!(
                            "{}: could not keep the output of attempt {k}: {e}",
                            rep.name
                        );
                    }
                    *file = None;
                }
            }
        }
    }
    fn after_finish(&mut self, i: usize, result: Outcome) {
        let passed = result == Outcome::Passed;
        for (d, why) in self.sched.finish(i, passed) {
            say!("{}: skipped: {why}", self.tests[d].name);
            self.record_skipped(d, why);
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
            level: t.meta.level,
            tiers: t.meta.tiers.clone(),
            tags: t.meta.tags.clone(),
            priority: t.meta.priority,
            depends_on: t.meta.depends_on.clone(),
            timeout_ms: t.meta.timeout.unwrap_or(o.test_timeout).as_millis() as u64,
            memory_bytes: t.meta.memory.or(o.test_memory),
            retries: t.meta.retries.unwrap_or(o.retries),
            ..TestReport::named(&t.name, t.path.display().to_string(), t.file.clone())
        }
    }
    /// `--resume`: tests the checkpoint says passed for this run id, ref and
    /// tier are not run again; returns them (for the new journal).
    fn resume(&mut self) -> Vec<String> {
        if !self.suite.options.resume {
            return Vec::new();
        }
        let tier = self.tier.map(|t| t.as_str());
        let loaded = match checkpoint::load(&self.suite.report_dir, tier) {
            Ok(Some(l)) => l,
            Ok(None) => {
                let path = checkpoint::path(&self.suite.report_dir, tier);
                say!(
                    "--resume: no checkpoint at {}: running every test",
                    path.display()
                );
                return Vec::new();
            }
            Err(e) => {
                say!("--resume: {e:#}: ignored, running every test");
                return Vec::new();
            }
        };
        let path = loaded.path.display().to_string();
        for note in &loaded.notes {
            say!("--resume: checkpoint {path}: {note}");
        }
        let cp = loaded.checkpoint;
        match checkpoint::decide(&cp, &self.suite.run_id, &self.suite.git_ref, tier) {
            Resume::Ignore(why) => {
                say!("--resume: checkpoint {path} ignored: {why}");
                Vec::new()
            }
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
                passed
            }
        }
    }
    /// Starts this attempt's journal, listing `passed` (what `--resume`
    /// took over); a failure is said and the suite runs without one.
    fn start_journal(&mut self, passed: Vec<String>) {
        let cp = Checkpoint {
            run_id: self.suite.run_id.clone(),
            git_ref: self.suite.git_ref.clone(),
            tier: self.tier.map(|t| t.as_str().to_string()),
            passed,
            updated: String::new(),
        };
        match Journal::create(&self.suite.report_dir, &cp) {
            Ok(j) => self.journal = Some(j),
            Err(e) => {
                let path = checkpoint::path(&self.suite.report_dir, cp.tier.as_deref());
                crate::log::write_failed(&format!("the checkpoint {}", path.display()), &e);
            }
        }
    }
    /// Appends test `i`'s pass to the journal, on this thread, before the
    /// pass is announced. A failed write is said once and ends the journal
    /// (a line after a cut one would be glued to it).
    fn journal_pass(&mut self, i: usize) {
        let Some(j) = self.journal.as_mut() else {
            return;
        };
        if let Err(e) = j.passed(&self.tests[i].name) {
            crate::log::write_failed(&format!("the checkpoint {}", j.path().display()), &e);
            self.journal = None;
        }
    }
    /// Makes the journal durable (the end of the tier, a self-protection
    /// stop); a failure is said.
    fn sync_journal(&mut self) {
        if let Some(j) = &self.journal {
            if let Err(e) = j.sync() {
                crate::log::write_failed(&format!("the checkpoint {}", j.path().display()), &e);
            }
        }
    }
    /// After an internal error: every running test's group gets SIGKILL at
    /// once and is reaped (no grace: the runner cannot keep its promises).
    fn abort_running(&mut self) {
        for mut r in std::mem::take(&mut self.running) {
            Escalation::armed(Target::Group(r.child.pid), Instant::now()).kill();
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
}
