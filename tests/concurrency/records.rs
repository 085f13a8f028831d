//! What an operator has the morning after: the state directory alone.
//! `status` from run locks (never a pid alone), exit 3 for a state
//! directory it cannot read, quiet on a closed pipe; `logs` of a run whose
//! tree is gone; a janitor that names a bad entry and goes on, and never
//! removes a record it cannot parse (SPEC sections 1, 3 and 5).

use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::support::*;

/// A run record as a run writes it (only the fields `status` needs).
fn plant_record(state: &std::path::Path, id: &str, pid: u32, finished: bool) {
    let dir = state.join("runs").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let mut rec = serde_json::json!({
        "run_id": id, "recipe": "example", "git_ref": "main", "domain": "example-b1.ci.localhost",
        "stack": "example-b1_ci_localhost", "pid": pid, "host": "ci1", "phase": "test-install",
        "started": format!("2026-01-01T00:00:{:02}.000Z", id.len()),
    });
    if finished {
        rec["phase"] = "finished".into();
        rec["finished"] = "2026-01-01T00:01:00.000Z".into();
        rec["exit_code"] = 1.into();
        rec["verdict"] = "failed".into();
        rec["failed_phase"] = "test-install".into();
    }
    std::fs::write(
        dir.join("run.json"),
        serde_json::to_vec_pretty(&rec).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("run.log"), format!("log of {id}\n")).unwrap();
}

fn status_json(f: &Fixture) -> Vec<serde_json::Value> {
    let out = f.cmd().args(["status", "--json"]).output().unwrap();
    assert_eq!(
        code(out.status),
        0,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
}

fn state_of(runs: &[serde_json::Value], id: &str) -> String {
    runs.iter()
        .find(|r| r["id"] == id)
        .map(|r| r["state"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("{id} not listed: {runs:?}"))
}

#[test]
fn status_reads_liveness_from_the_run_lock_not_from_a_pid() {
    let f = Fixture::new();
    // Our own pid: a live, unrelated process, as a reused pid would be.
    plant_record(&f.state, "reused", std::process::id(), false);
    // A live run: its run lock held (by a holder that is not the record's pid).
    plant_record(&f.state, "live", 999_999, false);
    let mut holder = Command::new(bin())
        .env("CCCI_STATE_DIR", &f.state)
        .args(["__hold-lock", "run", "live"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "held");
    plant_record(&f.state, "done", 1, true);
    let runs = status_json(&f);
    assert_eq!(state_of(&runs, "reused"), "dead");
    assert_eq!(state_of(&runs, "live"), "running");
    assert_eq!(state_of(&runs, "done"), "finished");
    let done = runs.iter().find(|r| r["id"] == "done").unwrap();
    assert_eq!(done["verdict"], "failed");
    assert_eq!(done["failed_phase"], "test-install");
    drop(holder.stdin.take());
    holder.wait().unwrap();
    assert_eq!(state_of(&status_json(&f), "live"), "dead");
    // The table has the columns an operator reads first.
    let out = f.cmd().arg("status").output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.lines().next().unwrap().contains("VERDICT"), "{table}");
    assert!(
        table.lines().next().unwrap().contains("FAILED PHASE"),
        "{table}"
    );
    assert!(table.contains("test-install"), "{table}");
}

#[test]
fn status_on_a_missing_or_unreadable_state_directory_is_exit_3_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    let missing = f.tmp.path().join("no-such-state");
    let out = f
        .cmd()
        .args(["status"])
        .env("CCCI_STATE_DIR", &missing)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 3, "{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");
    // Unreadable: mode 000, read as a user who is not root (root reads it).
    let locked = f.tmp.path().join("locked-state");
    std::fs::create_dir_all(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    // The temp dir above it must be traversable by that user.
    std::fs::set_permissions(f.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = f.cmd();
    c.args(["status"]).env("CCCI_STATE_DIR", &locked);
    if nix::unistd::geteuid().is_root() {
        c.uid(65534).gid(65534);
    }
    let out = c.output().unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 3, "{err}");
    assert!(
        err.contains(&locked.display().to_string()) && err.contains("denied"),
        "{err}"
    );
}

#[test]
fn printing_commands_end_quietly_on_a_closed_pipe() {
    let f = Fixture::new();
    // Enough records that the output outgrows the pipe's buffer, so the
    // writer really meets the closed pipe.
    for i in 0..400 {
        plant_record(&f.state, &format!("r{i:04}"), 1, true);
    }
    for cmd in ["status --json", "status", "locks --json"] {
        let out = Command::new("bash")
            .current_dir(f.tmp.path())
            .arg("-c")
            .arg(format!(
                "\"$0\" {cmd} | head -c 10 >/dev/null; echo \"rc=${{PIPESTATUS[0]}}\" >&2"
            ))
            .arg(bin())
            .env("CCCI_STATE_DIR", &f.state)
            .env("CCCI_ABRA_HOME", &f.abra_home)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim(), "rc=0", "{cmd}: {err}");
    }
}

#[test]
fn logs_prints_a_finished_runs_log_after_its_tree_is_gone_and_names_recent_runs() {
    let f = Fixture::new();
    let out = f
        .run_cmd(&["--pr", "1", "--quick"])
        .env("CCCI_RUN_ID", "readme")
        .output()
        .unwrap();
    assert_eq!(
        code(out.status),
        0,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(f.tree_gone("readme"));
    let logs = f.cmd().args(["logs", "readme"]).output().unwrap();
    assert_eq!(code(logs.status), 0);
    let text = String::from_utf8_lossy(&logs.stdout);
    // First the banner, last the summary block.
    let first = text.lines().next().unwrap();
    assert!(
        first.contains("cc-ci-run ") && first.contains("lock backend"),
        "{first}"
    );
    assert!(text.contains("── summary of run readme ──"), "{text}");
    assert!(text.contains("verdict: passed (exit 0)"), "{text}");
    let last = text.lines().last().unwrap();
    assert!(last.contains("log: "), "the summary ends the log: {last}");
    // The record carries phases with durations, the lock and tests per tier.
    let rec = f.record("readme");
    assert_eq!(rec["verdict"], "passed");
    assert!(rec["failed_phase"].is_null());
    assert_eq!(rec["phase"], "finished");
    assert!(rec["phases"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "test-install" && p["duration_ms"].is_u64()));
    assert_eq!(rec["lock"]["domain"], "example-pr1.ci.localhost");
    assert!(rec["lock"]["released"].is_string());
    assert_eq!(rec["tests"][0]["tier"], "install");
    // --follow of a finished run prints it and exits with its exit code.
    let out = f
        .cmd()
        .args(["logs", "--follow", "readme"])
        .output()
        .unwrap();
    assert_eq!(code(out.status), 0);
    // An unknown id: exit 2, naming the runs there are.
    let out = f.cmd().args(["logs", "nosuchrun"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 2, "{err}");
    assert!(err.contains("readme"), "{err}");
}

#[test]
fn logs_follow_streams_a_live_run_and_exits_with_its_code() {
    let f = Fixture::new();
    let mut run = f
        .run_cmd(&["--pr", "1", "--quick"])
        .env("CCCI_RUN_ID", "followed")
        .env("CCCI_EXAMPLE_FAIL", "install")
        .env("CCCI_EXAMPLE_HANG", "install")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_file(&f.ready.join("test-install"));
    let follow = f
        .cmd()
        .args(["logs", "--follow", "followed"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The run is still going: stop it; the follower sees it to the end.
    send(run.id() as i32, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(wait_exit(&mut run), 143);
    let out = follow.wait_with_output().unwrap();
    assert_eq!(code(out.status), 143);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("verdict: cancelled (exit 143), decided in phase test-install"),
        "{text}"
    );
}

#[test]
fn the_janitor_names_a_bad_entry_and_goes_on() {
    let f = Fixture::new();
    let domains = [
        "example-b701.ci.localhost",
        "example-b702.ci.localhost",
        "example-b703.ci.localhost",
    ];
    for d in domains {
        crate::janitor::orphan(&f, d);
    }
    // A planted symlink at the first candidate's lock path.
    let locks = f.state.join("locks/apps");
    std::fs::create_dir_all(&locks).unwrap();
    let target = f.tmp.path().join("elsewhere");
    std::fs::write(&target, "").unwrap();
    std::os::unix::fs::symlink(&target, locks.join(format!("{}.lock", domains[0]))).unwrap();
    // A truncated run record of a dead run, with its log.
    let broken = f.state.join("runs/drone-x-9");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("run.json"),
        b"{\"run_id\": \"drone-x-9\", \"reci",
    )
    .unwrap();
    std::fs::write(broken.join("run.log"), b"what happened\n").unwrap();

    let out = f.cmd().args(["janitor", "--json"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        code(out.status),
        3,
        "a bad entry is exit 3 at the end: {err}"
    );
    let sum: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut reaped: Vec<String> = serde_json::from_value(sum["reaped"].clone()).unwrap();
    reaped.sort();
    assert_eq!(reaped, [domains[1], domains[2]], "{err}");
    assert_eq!(
        sum["bad_entries"],
        serde_json::json!([format!("app:{}", domains[0])])
    );
    assert!(err.contains(domains[0]), "{err}");
    assert_eq!(sum["unreadable_records"], serde_json::json!(["drone-x-9"]));
    // The symlink's target was never written through.
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "");
    for _ in 0..2 {
        let _ = f.cmd().args(["janitor"]).output().unwrap();
        assert!(broken.join("run.json").exists() && broken.join("run.log").exists());
    }
    let runs = status_json(&f);
    assert_eq!(state_of(&runs, "drone-x-9"), "unreadable");
    // The symlink removed, the last orphan is reaped.
    std::fs::remove_file(locks.join(format!("{}.lock", domains[0]))).unwrap();
    let out = f.cmd().args(["janitor", "--json"]).output().unwrap();
    let sum: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sum["reaped"], serde_json::json!([domains[0]]));
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}

#[test]
fn history_of_real_runs_names_who_waited_for_whom() {
    let f = Fixture::new();
    let domain = "example-pr1.ci.localhost";
    // A holds the domain, paused in its tests; B asks for it and waits.
    let mut a = f
        .run_cmd(&["--pr", "1", "--quick"])
        .env("CCCI_RUN_ID", "hist-a")
        .env("CCCI_EXAMPLE_HANG", "install")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = KillOnPanic(vec![a.id() as i32]);
    wait_for_file(&f.ready.join("test-install"));
    let b = f
        .run_cmd(&["--pr", "1", "--quick"])
        .env("CCCI_RUN_ID", "hist-b")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    guard.add(b.id() as i32);
    wait_until("run B waiting for the app lock", || {
        std::fs::read_to_string(f.state.join("runs/hist-b/run.json"))
            .is_ok_and(|t| t.contains("\"phase\": \"lock\""))
    });
    // Cancel A; B then gets the domain and passes.
    send(a.id() as i32, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(wait_exit(&mut a), 143);
    let out = b.wait_with_output().unwrap();
    assert_eq!(code(out.status), 0);
    // C fails its tests on another domain.
    let out = f
        .run_cmd(&[
            "--pr",
            "1",
            "--quick",
            "--domain",
            "example-histc.ci.localhost",
        ])
        .env("CCCI_RUN_ID", "hist-c")
        .env("CCCI_EXAMPLE_FAIL", "install")
        .output()
        .unwrap();
    assert_eq!(
        code(out.status),
        1,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    guard.0.clear();

    let history = |extra: &[&str]| -> Vec<serde_json::Value> {
        let out = f
            .cmd()
            .arg("history")
            .arg("--json")
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(
            code(out.status),
            0,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let all = history(&[]);
    let ids: Vec<&str> = all.iter().map(|e| e["run_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["hist-c", "hist-b", "hist-a"], "newest first");
    let by = |id: &str| all.iter().find(|e| e["run_id"] == id).unwrap().clone();
    assert_eq!(by("hist-a")["verdict"], "cancelled");
    assert_eq!(by("hist-a")["failed_phase"], "test-install");
    assert_eq!(by("hist-b")["verdict"], "passed");
    assert_eq!(by("hist-b")["waited_for"], "hist-a");
    assert!(by("hist-b")["lock_wait_ms"].as_u64().unwrap() > 0);
    // B got the lock no earlier than A gave it back.
    let a_rel = by("hist-a")["lock_released"].as_str().unwrap().to_string();
    let b_acq = by("hist-b")["lock_acquired"].as_str().unwrap().to_string();
    assert!(b_acq >= a_rel, "B held {b_acq} before A released {a_rel}");
    assert_eq!(by("hist-c")["verdict"], "failed");
    let failed = history(&["--verdict", "failed"]);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["run_id"], "hist-c");
    let on_domain = history(&["--domain", domain]);
    assert_eq!(on_domain.len(), 2);
    let out = f
        .cmd()
        .args(["history", "--verdict", "green"])
        .output()
        .unwrap();
    assert_eq!(code(out.status), 2);
    let table = f.cmd().arg("history").output().unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.lines().next().unwrap().contains("LOCK WAIT"), "{text}");
}

/// A run that went red outside its tests names why in its record
/// (`reason`), and `summary` reads it back, as text and as markdown, after
/// the run tree is gone.
#[test]
fn summary_of_a_red_run_names_its_reason_after_the_tree_is_gone() {
    let f = Fixture::new();
    let out = f
        .cmd()
        .env("CCCI_FAKE_ABRA_FAIL", "deploy-chaos")
        .args(["run", "--recipe", "example", "--pr", "1", "--quick"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 3, "{stderr}");
    let id = std::fs::read_dir(f.state.join("runs"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .expect("the run left its record");
    assert!(f.tree_gone(&id), "the run tree is gone");
    let rec = f.record(&id);
    let reason = rec["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("deploy failed") && reason.contains("deploy-chaos failed"),
        "{rec}"
    );
    let md = f
        .cmd()
        .args(["summary", &id, "--format", "markdown"])
        .output()
        .unwrap();
    let md_text = String::from_utf8_lossy(&md.stdout);
    assert_eq!(
        code(md.status),
        0,
        "{}",
        String::from_utf8_lossy(&md.stderr)
    );
    assert!(md_text.starts_with("### ❌"), "{md_text}");
    assert!(
        md_text.contains("**Verdict:** `infra` (exit 3)"),
        "{md_text}"
    );
    assert!(
        md_text.contains("**Reason:** `") && md_text.contains("deploy-chaos failed"),
        "{md_text}"
    );
    let text = f.cmd().args(["summary", &id]).output().unwrap();
    assert_eq!(code(text.status), 0);
    assert!(String::from_utf8_lossy(&text.stdout).contains("verdict: infra (exit 3)"));
    // `comment --dry-run` prints what it would post (no token needed): the
    // same markdown; a malformed forge is exit 2 before anything is sent.
    let dry = f
        .cmd()
        .args([
            "comment",
            &id,
            "--dry-run",
            "--forge",
            "https://git.example.org/",
        ])
        .args(["--repo", "coop-cloud/example"])
        .output()
        .unwrap();
    let dry_err = String::from_utf8_lossy(&dry.stderr);
    assert_eq!(code(dry.status), 0, "{dry_err}");
    assert_eq!(String::from_utf8_lossy(&dry.stdout), md_text);
    assert!(
        dry_err
            .contains("https://git.example.org/api/v1/repos/coop-cloud/example/issues/1/comments"),
        "the pull request comes from the run's --pr: {dry_err}"
    );
    let bad = f
        .cmd()
        .args(["comment", &id, "--forge", "https://x/\"x", "--repo", "o/r"])
        .env("CCCI_FORGE_TOKEN", "t0ken")
        .output()
        .unwrap();
    assert_eq!(
        code(bad.status),
        2,
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid forge"));
    // An unknown run is exit 2 naming the runs there are.
    let none = f.cmd().args(["summary", "no-such-run"]).output().unwrap();
    assert_eq!(code(none.status), 2);
    assert!(String::from_utf8_lossy(&none.stderr).contains(&id));
}

/// `comment` posts only a finished run's verdict: an unfinished record is
/// exit 3 saying so, before any token or forge is used.
#[test]
fn comment_refuses_a_run_that_has_not_finished() {
    let f = Fixture::new();
    std::fs::create_dir_all(&f.state).unwrap();
    plant_record(&f.state, "drone-o-r-5", std::process::id(), false);
    let out = f
        .cmd()
        .args([
            "comment",
            "drone-o-r-5",
            "--dry-run",
            "--forge",
            "https://x",
        ])
        .args(["--repo", "o/r", "--pr", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 3, "{err}");
    assert!(
        err.contains("run drone-o-r-5 has not finished (phase test-install)"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing to post");
    // Finished, the same record is posted (here: printed by --dry-run).
    plant_record(&f.state, "drone-o-r-5", std::process::id(), true);
    let out = f
        .cmd()
        .args([
            "comment",
            "drone-o-r-5",
            "--dry-run",
            "--forge",
            "https://x",
        ])
        .args(["--repo", "o/r", "--pr", "1"])
        .output()
        .unwrap();
    assert_eq!(
        code(out.status),
        0,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("**Verdict:** `failed` (exit 1)"));
}
