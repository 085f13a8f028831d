//! The fault matrix of the run lifecycle: for each phase, each way a run is
//! stopped. Every cell checks the exit code (from the wrapper, or from the
//! run record when the wrapper's parent was SIGKILLed), that nothing of the
//! app is left (or, when teardown itself was made to fail, that the run said
//! so with exit 4 and a janitor sweep reaps it), both locks free, the run
//! tree gone, no process of the run left, and the run's merged junit.xml
//! (SPEC section 6): read with quick-xml, and with junitparser when
//! `CCCI_DEV_JUNIT_PYTHON` names its python, it is red for the right reason (a
//! `phase: <phase>` error naming the verdict, or the failing test with its
//! stderr). The matrix is printed as a table.

use std::process::{Child, Stdio};
use std::sync::Mutex;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::support::*;

const DOMAIN: &str = "example-pr1.ci.localhost";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Fetch,
    /// The prepare phase's image pull (a registry that hangs or refuses),
    /// before the app lock is asked for.
    Pull,
    LockWait,
    InstallDeploy,
    Converge,
    Test,
    UpgradeDeploy,
    Backup,
    Teardown,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stop {
    /// SIGKILL of the Drone step's `/bin/sh` only.
    KillSh,
    SigTerm,
    SigInt,
    /// The run deadline (`--timeout`) while the phase hangs.
    Deadline,
    /// The external program fails at that step.
    Fail,
}

struct Cell {
    phase: Phase,
    stop: Stop,
    expect: i32,
}

/// How to make a run pause in `phase`, and what marks that it is there.
fn pause_env(phase: Phase, stop: Stop) -> Vec<(&'static str, String)> {
    let hang_or_fail = |step: &str| {
        let key = if stop == Stop::Fail {
            "CCCI_FAKE_ABRA_FAIL"
        } else {
            "CCCI_FAKE_ABRA_HANG"
        };
        vec![(key, step.to_string())]
    };
    match phase {
        Phase::Fetch => {
            let key = if stop == Stop::Fail {
                "CCCI_FAKE_GIT_FAIL"
            } else {
                "CCCI_FAKE_GIT_HANG"
            };
            vec![(key, "fetch".into())]
        }
        Phase::Pull => hang_or_fail("pull"),
        Phase::LockWait => vec![],
        Phase::InstallDeploy => hang_or_fail("deploy"),
        Phase::Converge => vec![("CCCI_FAKE_ABRA_CRASHLOOP", DOMAIN.into())],
        Phase::Test => {
            let key = if stop == Stop::Fail {
                "CCCI_EXAMPLE_FAIL"
            } else {
                "CCCI_EXAMPLE_HANG"
            };
            vec![(key, "install".into())]
        }
        Phase::UpgradeDeploy => hang_or_fail("deploy-chaos"),
        Phase::Backup => hang_or_fail("backup"),
        Phase::Teardown => hang_or_fail("undeploy"),
    }
}

fn expected(phase: Phase, stop: Stop) -> Option<i32> {
    Some(match (phase, stop) {
        (Phase::LockWait, Stop::Fail) => return None,
        (Phase::Teardown, _) => 4,
        (_, Stop::KillSh | Stop::SigTerm) => 143,
        (_, Stop::SigInt) => 130,
        (_, Stop::Deadline) => 142,
        (Phase::Test, Stop::Fail) => 1,
        (_, Stop::Fail) => 3,
    })
}

/// The record's `failed_phase` for a run stopped in `phase`.
fn failed_phase(phase: Phase) -> &'static str {
    match phase {
        Phase::Fetch => "fetch",
        Phase::Pull => "prepare",
        Phase::LockWait => "lock",
        Phase::InstallDeploy => "install",
        Phase::Converge => "install-converge",
        Phase::Test => "test-install",
        Phase::UpgradeDeploy => "upgrade",
        Phase::Backup => "backup",
        Phase::Teardown => "teardown",
    }
}

/// The phase the merged junit.xml names for a cell (the record's
/// failed_phase), or None when the failing test itself is the reason.
fn junit_phase(phase: Phase, stop: Stop) -> Option<&'static str> {
    match (phase, stop) {
        (Phase::Test, Stop::Fail) => None,
        _ => Some(failed_phase(phase)),
    }
}

/// What is wrong with the run's merged junit.xml for `cell`.
fn junit_problems(f: &Fixture, run_id: &str, cell: &Cell) -> Vec<String> {
    let path = f.state.join("runs").join(run_id).join("report/junit.xml");
    if !path.exists() {
        return vec!["no merged junit.xml".into()];
    }
    let doc = crate::junit::check(&path);
    let rec = f.record(run_id);
    let mut problems = Vec::new();
    let (failures, errors) = (doc.totals.failures, doc.totals.errors);
    let phases: Vec<&str> = doc
        .cases
        .iter()
        .filter_map(|c| c.name.strip_prefix("phase: "))
        .collect();
    match junit_phase(cell.phase, cell.stop) {
        None => {
            // The failing test is the reason, with its stderr.
            let t = doc.case("00-deployed.sh");
            if (failures, errors) != (1, 0) || t.kind != "failure" || !phases.is_empty() {
                problems.push(format!(
                    "junit {failures} failure(s) {errors} error(s), phases {phases:?}"
                ));
            }
            if !t.text.contains("failing on purpose") {
                problems.push(format!("failure text without stderr: {:?}", t.text));
            }
        }
        Some(want) => {
            // A test killed by the stop is an error too.
            let want_errors = if cell.phase == Phase::Test { 2 } else { 1 };
            if phases != [want] || rec["failed_phase"] != want {
                problems.push(format!(
                    "junit phases {phases:?}, record {}, want {want}",
                    rec["failed_phase"]
                ));
            }
            if (failures, errors) != (0, want_errors) {
                problems.push(format!(
                    "junit {failures} failure(s) {errors} error(s), want 0 and {want_errors}"
                ));
            }
            if let Some(c) = doc
                .cases
                .iter()
                .find(|c| c.name == format!("phase: {want}"))
            {
                let verdict = rec["verdict"].as_str().unwrap_or("?");
                let head = format!("{verdict} in phase {want}: ");
                if c.kind != "error"
                    || c.classname != "example.run"
                    || !c.message.starts_with(&head)
                {
                    problems.push(format!("phase testcase {c:?}"));
                }
                // The message, the line naming the log, then its lines.
                if !c.text.contains("run.log") || c.text.lines().count() < 4 {
                    problems.push(format!("phase error without the log's lines: {:?}", c.text));
                }
            }
        }
    }
    problems
}

/// Waits until the run is paused in `phase`.
fn wait_paused(f: &Fixture, phase: Phase, run_id: &str) {
    let phase_is = |want: &str| {
        let path = f.state.join("runs").join(run_id).join("run.json");
        std::fs::read_to_string(path).is_ok_and(|t| t.contains(&format!("\"phase\": \"{want}\"")))
    };
    match phase {
        Phase::Fetch => {
            f.wait_hang("git-fetch");
        }
        Phase::Pull => {
            f.wait_hang("pull");
        }
        Phase::LockWait => wait_until("run waiting for the app lock", || phase_is("lock")),
        Phase::InstallDeploy => {
            f.wait_hang("deploy");
        }
        Phase::Converge => wait_until("run in convergence", || phase_is("install-converge")),
        Phase::Test => wait_for_file(&f.ready.join("test-install")),
        Phase::UpgradeDeploy => {
            f.wait_hang("deploy-chaos");
        }
        Phase::Backup => {
            f.wait_hang("backup");
        }
        Phase::Teardown => {
            f.wait_hang("undeploy");
        }
    }
}

fn run_cell(cell: &Cell) -> Result<String, String> {
    let f = Fixture::new();
    let run_id = "fault";
    // The deadline cell of teardown needs the run to reach teardown before
    // the deadline, even on a loaded machine: a longer deadline there, and a
    // teardown bound longer still.
    // The later phases get a longer deadline: the run must reach the phase
    // (where it hangs) before the deadline fires, or the cell tests another
    // phase (the record's failed_phase catches that).
    let timeout = match (cell.stop, cell.phase) {
        (Stop::Deadline, Phase::Teardown) => "15s",
        (Stop::Deadline, Phase::Test | Phase::UpgradeDeploy | Phase::Backup) => "20s",
        (Stop::Deadline, _) => "8s",
        _ => "120s",
    };
    let mut args = vec!["--pr", "1", "--timeout", timeout];
    if cell.phase == Phase::Teardown {
        // Reach teardown fast; for the deadline cell the teardown bound
        // outlasts the deadline, so the deadline fires while teardown hangs.
        args.push("--quick");
    }
    let mut c = f.run_cmd(&args);
    c.env("CCCI_RUN_ID", run_id).env(
        "CCCI_CONVERGE_TIMEOUT",
        if cell.stop == Stop::Fail {
            "2s"
        } else {
            "120s"
        },
    );
    if cell.phase == Phase::Teardown {
        c.env(
            "CCCI_TEARDOWN_TIMEOUT",
            if cell.stop == Stop::Deadline {
                "25s"
            } else {
                "3s"
            },
        );
    }
    for (k, v) in pause_env(cell.phase, cell.stop) {
        c.env(k, v);
    }
    // Another holder of the app lock (util-linux flock) for the lock phase.
    let mut holder: Option<Child> = None;
    if cell.phase == Phase::LockWait {
        holder = Some(hold_with_flock(
            &f.state.join("locks/apps").join(format!("{DOMAIN}.lock")),
        ));
    }
    c.stderr(Stdio::null()).stdout(Stdio::null());
    let code_seen = match cell.stop {
        Stop::KillSh => {
            // Drone's exec runner: /bin/sh -e SCRIPT, and on cancel SIGKILL to that sh only.
            let mut sh = spawn_as_drone_step(&c, f.tmp.path());
            wait_paused(&f, cell.phase, run_id);
            kill(Pid::from_raw(sh.id() as i32), Signal::SIGKILL).unwrap();
            sh.wait().unwrap();
            // Nobody can wait for the orphaned wrapper: the run record's
            // final exit code, and no process left, say it is done.
            wait_until("the run record's exit code", || {
                std::fs::read_to_string(f.state.join("runs").join(run_id).join("run.json"))
                    .is_ok_and(|t| t.contains("\"finished\": \""))
            });
            wait_until("no process of the run", || {
                procs_with_env("CCCI_FAKE_STATE", &f.fake).is_empty()
            });
            f.record(run_id)["exit_code"].as_i64().unwrap_or(-1) as i32
        }
        stop => {
            let mut child = c.spawn().unwrap();
            if stop != Stop::Fail && stop != Stop::Deadline {
                wait_paused(&f, cell.phase, run_id);
                // SIGTERM goes to the wrapper (which forwards SIGTERM, SPEC
                // section 2); SIGINT to the harness itself, as an operator's
                // `kill -INT` of the pid `status` shows.
                let (pid, sig) = if stop == Stop::SigInt {
                    (
                        f.record(run_id)["pid"].as_i64().unwrap() as i32,
                        Signal::SIGINT,
                    )
                } else {
                    (child.id() as i32, Signal::SIGTERM)
                };
                kill(Pid::from_raw(pid), sig).unwrap();
            }
            if stop == Stop::Deadline && cell.phase == Phase::Teardown {
                wait_paused(&f, cell.phase, run_id);
            }
            code(child.wait().unwrap())
        }
    };
    if let Some(h) = holder {
        release_flock(h);
    }
    let mut problems = Vec::new();
    if code_seen != cell.expect {
        problems.push(format!("exit {code_seen}, expected {}", cell.expect));
    }
    let rec = f.record(run_id);
    if rec["exit_code"] != cell.expect {
        problems.push(format!("record exit {}", rec["exit_code"]));
    }
    // Where an operator reads why: the verdict and the phase it was
    // decided in (the final phase is always `finished`).
    let verdict = cc_ci_run::verdict::Verdict::of_exit(cell.expect).as_str();
    if rec["verdict"] != verdict {
        problems.push(format!(
            "record verdict {}, expected {verdict}",
            rec["verdict"]
        ));
    }
    let want_phase = failed_phase(cell.phase);
    if rec["failed_phase"] != want_phase {
        problems.push(format!(
            "record failed_phase {}, expected {want_phase}",
            rec["failed_phase"]
        ));
    }
    // The log outlives the run tree: `logs RUN` prints it, ending with the
    // summary block.
    let logs = f.cmd().args(["logs", run_id]).output().unwrap();
    let text = String::from_utf8_lossy(&logs.stdout);
    if code(logs.status) != 0
        || !text.contains(&format!("verdict: {verdict} (exit {})", cell.expect))
    {
        problems.push(format!(
            "logs {run_id}: exit {}, no verdict line in {} bytes",
            code(logs.status),
            text.len()
        ));
    }
    if matches!(cell.phase, Phase::Fetch | Phase::Pull) {
        // Stopped before the app lock (SPEC 3): nothing was asked of the
        // server, not even a pre-clean.
        let mutating: Vec<String> = f
            .calls()
            .iter()
            .filter(|c| c["prog"] == "abra" && c["result"] == "start")
            .map(|c| c["step"].as_str().unwrap_or("?").to_string())
            .collect();
        if !mutating.is_empty() {
            problems.push(format!(
                "abra changed the server before the lock: {mutating:?}"
            ));
        }
    }
    if !f.lock_free("apps", DOMAIN) {
        problems.push("app lock held".into());
    }
    if !f.lock_free("runs", run_id) {
        problems.push("run lock held".into());
    }
    if !f.tree_gone(run_id) {
        problems.push("run tree left".into());
    }
    problems.extend(junit_problems(&f, run_id, cell));
    wait_until("no process of the run", || {
        procs_with_env("CCCI_FAKE_STATE", &f.fake).is_empty()
    });
    let mut note = String::from("app gone");
    if cell.expect == 4 {
        // Teardown was made to fail: the app is left, and the janitor reaps it.
        if f.leftovers().is_empty() {
            problems.push("teardown failed but nothing was left?".into());
        }
        let out = f.cmd().arg("janitor").output().unwrap();
        if code(out.status) != 0 {
            problems.push(format!("janitor exit {}", code(out.status)));
        }
        note = "left, reaped by janitor".into();
    }
    if !f.leftovers().is_empty() {
        problems.push(format!("left on the swarm: {:?}", f.leftovers()));
    }
    if problems.is_empty() {
        Ok(format!(
            "exit {code_seen} ({verdict} in {want_phase}), {note}, locks free, tree gone, no process, log kept, junit red for it"
        ))
    } else {
        Err(problems.join("; "))
    }
}

#[test]
fn fault_matrix() {
    let phases = [
        Phase::Fetch,
        Phase::Pull,
        Phase::LockWait,
        Phase::InstallDeploy,
        Phase::Converge,
        Phase::Test,
        Phase::UpgradeDeploy,
        Phase::Backup,
        Phase::Teardown,
    ];
    let stops = [
        Stop::KillSh,
        Stop::SigTerm,
        Stop::SigInt,
        Stop::Deadline,
        Stop::Fail,
    ];
    let cells: Vec<Cell> = phases
        .iter()
        .flat_map(|p| {
            stops.iter().filter_map(move |s| {
                expected(*p, *s).map(|e| Cell {
                    phase: *p,
                    stop: *s,
                    expect: e,
                })
            })
        })
        .collect();
    let results: Mutex<Vec<(usize, Result<String, String>)>> = Mutex::new(Vec::new());
    let next = Mutex::new(0usize);
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    let i = *n;
                    *n += 1;
                    i
                };
                let Some(cell) = cells.get(i) else { return };
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_cell(cell)))
                    .unwrap_or_else(|_| Err("panicked".into()));
                results.lock().unwrap().push((i, r));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    let mut table = String::from("\nfault matrix (phase x stop): expected exit, outcome\n");
    table += &format!(
        "{:<15} {:<9} {:>4}  {}\n",
        "phase", "stop", "want", "outcome"
    );
    let mut failed = 0;
    for (i, r) in &results {
        let c = &cells[*i];
        let (mark, text) = match r {
            Ok(t) => ("ok  ", t.clone()),
            Err(e) => {
                failed += 1;
                ("FAIL", e.clone())
            }
        };
        table += &format!(
            "{:<15} {:<9} {:>4}  {mark} {text}\n",
            format!("{:?}", c.phase),
            format!("{:?}", c.stop),
            c.expect
        );
    }
    eprintln!("{table}");
    println!("{table}");
    assert_eq!(failed, 0, "{table}");
}
