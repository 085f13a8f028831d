//! The janitor against the stand-in abra: orphans of dead runs reaped under
//! their lock, live and protected apps never touched, exactly-once reaping
//! between two janitors, the race with a new run, and --watch stopping.

use std::process::Stdio;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::support::*;

/// Creates a deployed app on the fake swarm with the canonical ABRA_DIR,
/// as a run that died after deploying would leave it: with the marker a run
/// writes into the env file right after `app new`.
pub(crate) fn orphan(f: &Fixture, domain: &str) {
    deploy_outside(domain, |a| f.abra(a));
    mark_created_by_a_run(&f.abra_home, domain);
}

fn rm_count(f: &Fixture, domain: &str) -> usize {
    f.ok_steps()
        .iter()
        .filter(|(s, d)| s == "rm" && d == domain)
        .count()
}

fn deployed(f: &Fixture, domain: &str) -> bool {
    f.abra_home
        .join("servers/default")
        .join(format!("{domain}.env"))
        .exists()
}

#[test]
fn orphan_of_a_sigkilled_run_is_reaped() {
    let f = Fixture::new();
    let mut run = f
        .run_cmd(&["--pr", "1", "--domain", "example-pr7.ci.localhost"])
        .env("CCCI_RUN_ID", "dead")
        .env("CCCI_EXAMPLE_HANG", "install")
        .env("CCCI_JANITOR", "off")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_file(&f.ready.join("test-install"));
    let harness = f.record("dead")["pid"].as_i64().unwrap() as i32;
    // Both processes die without teardown (OOM killer, host crash).
    kill(Pid::from_raw(harness), Signal::SIGKILL).unwrap();
    kill(Pid::from_raw(run.id() as i32), Signal::SIGKILL).unwrap();
    run.wait().unwrap();
    // Every thread of it: its flock goes with the last one.
    wait_until("harness gone", || exited_whole(harness));
    // The hung test was in the harness's session; PDEATHSIG ends it.
    wait_until("no process of the dead run", || {
        procs_with_env("CCCI_FAKE_STATE", &f.fake).is_empty()
    });
    let domain = "example-pr7.ci.localhost";
    assert!(deployed(&f, domain));
    let out = f.cmd().args(["janitor", "--json"]).output().unwrap();
    assert_eq!(
        code(out.status),
        0,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sum: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        sum["reaped"],
        serde_json::json!([domain]),
        "{sum}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
    assert!(f.tree_gone("dead"), "the dead run's tree is tidied");
    assert_eq!(f.record("dead")["phase"], "abandoned");
}

#[test]
fn live_runs_app_is_never_reaped_at_any_phase() {
    let f = Fixture::new();
    let domain = "example-pr8.ci.localhost";
    // Pause a live run in several phases in turn and sweep each time.
    for (knob, value, marker) in [
        ("CCCI_FAKE_ABRA_HANG", "deploy", "deploy"),
        ("CCCI_EXAMPLE_HANG", "install", ""),
        ("CCCI_FAKE_ABRA_HANG", "deploy-chaos", "deploy-chaos"),
        ("CCCI_FAKE_ABRA_HANG", "backup", "backup"),
    ] {
        let _ = std::fs::remove_dir_all(f.fake.join("hang"));
        let _ = std::fs::remove_file(f.ready.join("test-install"));
        let mut run = f
            .run_cmd(&["--pr", "1", "--domain", "example-pr8.ci.localhost"])
            .env("CCCI_RUN_ID", "live")
            .env(knob, value)
            .env("CCCI_JANITOR", "off")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if marker.is_empty() {
            wait_for_file(&f.ready.join("test-install"));
        } else {
            f.wait_hang(marker);
        }
        let before = rm_count(&f, domain);
        let out = f.cmd().args(["janitor", "--json"]).output().unwrap();
        assert_eq!(code(out.status), 0);
        let sum: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(sum["skipped_live"], 1, "{value}: {sum}");
        assert_eq!(
            rm_count(&f, domain),
            before,
            "{value}: the janitor tore down a live run's app"
        );
        assert!(deployed(&f, domain));
        kill(Pid::from_raw(run.id() as i32), Signal::SIGTERM).unwrap();
        assert_eq!(code(run.wait().unwrap()), 143);
        assert!(f.leftovers().is_empty());
    }
}

#[test]
fn protected_and_non_matching_apps_are_never_probed() {
    let f = Fixture::new();
    orphan(&f, "warm.example.org");
    orphan(&f, "example-prod.ci.localhost");
    let out = f
        .cmd()
        .args(["janitor", "--json"])
        .env(
            "CCCI_PROTECTED_APPS",
            "warm.example.org,example-prod.ci.localhost",
        )
        .output()
        .unwrap();
    assert_eq!(
        code(out.status),
        0,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sum: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sum["candidates"], 0);
    assert!(deployed(&f, "warm.example.org") && deployed(&f, "example-prod.ci.localhost"));
    let locks = f.state.join("locks/apps");
    let files: Vec<_> = std::fs::read_dir(&locks)
        .map(|r| r.collect::<Vec<_>>())
        .unwrap_or_default();
    assert!(files.is_empty(), "lock files were created: {files:?}");
    // A gate that would match a protected app refuses to start.
    let out = f
        .cmd()
        .args(["janitor"])
        .env("CCCI_RUN_APP_RE", "^.*$")
        .env("CCCI_PROTECTED_APPS", "warm.example.org")
        .output()
        .unwrap();
    assert_eq!(code(out.status), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("warm.example.org"));
    let out = f
        .cmd()
        .args(["janitor"])
        .env("CCCI_RUN_APP_RE", "(")
        .output()
        .unwrap();
    assert_eq!(code(out.status), 2);
    // Tidy the fixtures by hand (the janitor must not).
    for d in ["warm.example.org", "example-prod.ci.localhost"] {
        for args in [
            vec!["app", "undeploy", d, "-n"],
            vec!["app", "rm", d, "-f", "-n"],
        ] {
            let _ = std::process::Command::new(fake_dir().join("abra"))
                .args(&args)
                .env("ABRA_DIR", &f.abra_home)
                .env("CCCI_FAKE_STATE", &f.fake)
                .env("CCCI_FAKE_ABRA_LINGER_MS", "0")
                .output();
        }
    }
}

#[test]
fn two_janitors_reap_fifty_orphans_exactly_once() {
    let f = Fixture::new();
    let domains: Vec<String> = (1..=50)
        .map(|i| format!("example-b{i}.ci.localhost"))
        .collect();
    for d in &domains {
        orphan(&f, d);
    }
    let spawn = || {
        f.cmd()
            .args(["janitor", "--json"])
            .env("CCCI_FAKE_ABRA_LINGER_MS", "20")
            .stderr(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(code(a.status), 0);
    assert_eq!(code(b.status), 0);
    let reaped = |o: &std::process::Output| -> usize {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["reaped"].as_array().map(|a| a.len()).unwrap_or(0)
    };
    assert_eq!(reaped(&a) + reaped(&b), 50);
    for d in &domains {
        assert_eq!(
            rm_count(&f, d),
            1,
            "{d} torn down {} times",
            rm_count(&f, d)
        );
    }
    assert!(f.leftovers().is_empty());
}

#[test]
fn janitor_and_new_run_race_run_deploys_only_after_the_reap() {
    let f = Fixture::new();
    let domain = "example-pr9.ci.localhost";
    orphan(&f, domain);
    // The janitor's reap hangs in rm (after undeploy) while it holds the lock.
    let mut jan = f
        .cmd()
        .arg("janitor")
        .env("CCCI_FAKE_ABRA_HANG", format!("rm@{domain}"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rm_pid = f.wait_hang("rm");
    let mut run = f
        .run_cmd(&[
            "--pr",
            "1",
            "--domain",
            "example-pr9.ci.localhost",
            "--quick",
        ])
        .env("CCCI_RUN_ID", "racer")
        .env("CCCI_JANITOR", "off")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the run waits for the app lock", || {
        std::fs::read_to_string(f.state.join("runs/racer/run.json"))
            .is_ok_and(|t| t.contains("\"phase\": \"lock\""))
    });
    // Let the reap finish: the hung rm dies, the janitor retries nothing and
    // reports the failure, releasing the lock; the run's pre-clean finishes it.
    kill(Pid::from_raw(rm_pid), Signal::SIGKILL).unwrap();
    jan.wait().unwrap();
    assert_eq!(code(run.wait().unwrap()), 0);
    // Oracle: the run's first call for the domain starts after the janitor's last ended.
    let calls = f.calls();
    let of = |rid: &str| -> Vec<u64> {
        calls
            .iter()
            .filter(|c| c["domain"] == domain && (c["run_id"] == rid) == (rid == "racer"))
            .filter(|c| c["run_id"] == "racer" || rid != "racer")
            .map(|c| c["ts"].as_u64().unwrap())
            .collect()
    };
    let janitor_last = calls
        .iter()
        .filter(|c| c["domain"] == domain && c["run_id"] == "janitor")
        .map(|c| c["ts"].as_u64().unwrap())
        .max()
        .unwrap();
    let run_first = *of("racer").iter().min().unwrap();
    assert!(
        run_first > janitor_last,
        "the run touched the app while the janitor held it"
    );
    assert!(f.leftovers().is_empty());
}

#[test]
fn lock_held_past_max_age_is_flagged_and_kept() {
    let f = Fixture::new();
    let domain = "example-pr3.ci.localhost";
    orphan(&f, domain);
    let lock = f.state.join("locks/apps").join(format!("{domain}.lock"));
    let holder = hold_with_flock(&lock);
    // Age it: the lock's age comes from the file's mtime.
    let old = std::process::Command::new("touch")
        .args(["-d", "3 hours ago"])
        .arg(&lock)
        .status()
        .unwrap();
    assert!(old.success());
    let out = f
        .cmd()
        .args(["janitor", "--check", "--json"])
        .output()
        .unwrap();
    assert_ne!(code(out.status), 0, "--check must report a long-held lock");
    let sum: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sum["flagged"], serde_json::json!([format!("app:{domain}")]));
    assert!(!f.lock_free("apps", domain), "the flagged lock was stolen");
    assert!(deployed(&f, domain), "a held lock's app was touched");
    release_flock(holder);
    let out = f.cmd().arg("janitor").output().unwrap();
    assert_eq!(code(out.status), 0);
    assert!(f.leftovers().is_empty());
}

#[test]
fn one_failed_teardown_does_not_stop_the_sweep() {
    let f = Fixture::new();
    let bad = "example-b1.ci.localhost";
    let good = ["example-b2.ci.localhost", "example-b3.ci.localhost"];
    orphan(&f, bad);
    for g in good {
        orphan(&f, g);
    }
    let out = f
        .cmd()
        .args(["janitor", "--json"])
        .env("CCCI_FAKE_ABRA_FAIL", format!("undeploy@{bad}"))
        .output()
        .unwrap();
    assert_eq!(
        code(out.status),
        3,
        "a failed reap is reported in the exit code"
    );
    let sum: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sum["failed"], serde_json::json!([bad]));
    assert_eq!(sum["reaped"].as_array().unwrap().len(), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains(bad));
    assert!(deployed(&f, bad));
    let out = f.cmd().arg("janitor").output().unwrap();
    assert_eq!(code(out.status), 0);
    assert!(f.leftovers().is_empty());
}

#[test]
fn watch_stopped_by_sigterm_mid_reap_finishes_the_reap_under_its_lock() {
    let f = Fixture::new();
    let domain = "example-b4.ci.localhost";
    orphan(&f, domain);
    let mut jan = f
        .cmd()
        .args(["janitor", "--watch", "--interval", "1h"])
        .env("CCCI_FAKE_ABRA_HANG", format!("undeploy@{domain}"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let hung = f.wait_hang("undeploy");
    kill(Pid::from_raw(jan.id() as i32), Signal::SIGTERM).unwrap();
    // The reap goes on holding the lock: it is not abandoned half-way.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        !f.lock_free("apps", domain),
        "the lock was dropped mid-reap"
    );
    kill(Pid::from_raw(hung), Signal::SIGKILL).unwrap();
    let c = code(jan.wait().unwrap());
    assert_eq!(c, 0, "--watch stops cleanly with exit 0");
    assert!(f.lock_free("apps", domain));
    let out = f.cmd().arg("janitor").output().unwrap();
    assert_eq!(code(out.status), 0);
    assert!(f.leftovers().is_empty());
}

#[test]
fn watch_survives_failing_ticks_and_stops_cleanly() {
    let f = Fixture::new();
    let log = f.tmp.path().join("janitor.log");
    // Every tick's listing fails: the server's env-file directory is gone
    // (what the janitor lists; abra's own listing fails on it too).
    std::fs::remove_dir(f.abra_home.join("servers/default")).unwrap();
    let mut jan = f
        .cmd()
        .args(["janitor", "--watch", "--interval", "50ms"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_until("two failed ticks", || {
        std::fs::read_to_string(&log)
            .is_ok_and(|t| t.matches("sweep failed, trying again next tick").count() >= 2)
    });
    assert!(
        alive(jan.id() as i32),
        "a failing tick must not end --watch"
    );
    kill(Pid::from_raw(jan.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(code(jan.wait().unwrap()), 0);
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("stopped cleanly"));
}

/// The marker line of a run, as env-file text (for files planted by hand).
fn marked_env(domain: &str) -> String {
    let line = cc_ci_run::ext::abra::marker::line("drone-x-2", "ci1", "2026-01-01T00:00:00.000Z");
    format!("{line}\nTYPE=example:1.0.0+1.0\nDOMAIN={domain}\n")
}

/// The domains the stand-in's `abra app ls -s default -m` lists.
fn abra_lists(f: &Fixture) -> Vec<String> {
    let out = f.abra(&["app", "ls", "-s", "default", "-m"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let apps =
        cc_ci_run::ext::abra::parse::parse_app_ls(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let mut v: Vec<String> = apps.iter().map(|a| a.name().to_string()).collect();
    v.sort();
    v
}

#[test]
fn the_janitor_takes_for_apps_exactly_the_env_files_abra_lists() {
    let f = Fixture::new();
    let orphaned = "example-b1.ci.localhost";
    let operators = "example-b7.ci.localhost";
    orphan(&f, orphaned);
    deploy_outside(operators, |a| f.abra(a));
    let default = f.abra_home.join("servers/default");
    let other = f.abra_home.join("servers/other");
    std::fs::create_dir_all(&other).unwrap();
    // Each carries the marker and a name the gate below matches: listed
    // as an app, each would be probed (and an orphan reaped).
    let planted = [
        default.join("example-b2.ci.localhost"), // no .env suffix
        default.join("example-b3.ci.localhost.env.bak"), // not *.env
        default.join(".example-b4.ci.localhost.env"), // a dotfile
        other.join("example-b6.ci.localhost.env"), // another server's app
    ];
    for p in &planted {
        std::fs::write(p, marked_env("example-b9.ci.localhost")).unwrap();
    }
    // A subdirectory named like an app's env file, with a marked file in it.
    let subdir = default.join("example-b5.ci.localhost.env");
    std::fs::create_dir(&subdir).unwrap();
    std::fs::write(subdir.join("x.env"), marked_env("x")).unwrap();
    // A gate that also matches the dotfile's name, so that only the
    // listing keeps it out.
    let gate = r"^\.?example-b[0-9]+\.ci\.localhost$";

    // The stand-in abra lists the two apps and nothing planted.
    assert_eq!(abra_lists(&f), [orphaned, operators]);
    // So does the janitor (a dry run: nothing is touched).
    let sweep = |dry: bool| {
        let mut c = f.cmd();
        c.args(["janitor", "--json"]).env("CCCI_RUN_APP_RE", gate);
        if dry {
            c.arg("--dry-run");
        }
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(code(out.status), 0, "{err}");
        let sum: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (sum, err)
    };
    let (sum, err) = sweep(true);
    assert_eq!(sum["candidates"], 1, "{sum} {err}");
    assert_eq!(sum["would_reap"], serde_json::json!([orphaned]), "{err}");
    assert_eq!(sum["unmarked"], serde_json::json!([operators]), "{err}");
    assert_eq!(sum["bad_entries"], serde_json::json!([]), "{err}");
    for n in ["b2", "b3", "b4", "b5", "b6"] {
        assert!(
            !err.contains(&format!("example-{n}.")),
            "{n} was looked at: {err}"
        );
    }
    // The real sweep reaps the orphan and touches nothing else.
    let (sum, err) = sweep(false);
    assert_eq!(sum["reaped"], serde_json::json!([orphaned]), "{err}");
    assert_eq!(sum["unmarked"], serde_json::json!([operators]), "{err}");
    assert_eq!(sum["bad_entries"], serde_json::json!([]), "{err}");
    for p in planted.iter().chain([&subdir.join("x.env")]) {
        assert!(p.exists(), "{} was removed", p.display());
    }
    assert!(deployed(&f, operators));
    let locks: Vec<String> = std::fs::read_dir(f.state.join("locks/apps"))
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(locks.is_empty(), "lock files were created: {locks:?}");
    assert_eq!(abra_lists(&f), [operators]);
}

#[test]
fn an_unreadable_env_file_is_named_and_skipped_and_the_sweep_goes_on() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let f = Fixture::new();
    let domains = [
        "example-b1.ci.localhost",
        "example-b2.ci.localhost",
        "example-b3.ci.localhost",
    ];
    for d in domains {
        orphan(&f, d);
    }
    let bad = domains[1];
    let env = f
        .abra_home
        .join("servers/default")
        .join(format!("{bad}.env"));
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o000)).unwrap();
    // Symbolic links that lead nowhere: one the gate matches (an odd entry,
    // named), one of an app it does not (none of the janitor's business).
    let dangling = f
        .abra_home
        .join("servers/default/example-b8.ci.localhost.env");
    let foreign = f.abra_home.join("servers/default/warm.example.org.env");
    for link in [&dangling, &foreign] {
        std::os::unix::fs::symlink(f.tmp.path().join("nowhere"), link).unwrap();
    }
    let mut c = f.cmd();
    c.args(["janitor", "--json"]);
    if nix::unistd::geteuid().is_root() {
        // Root reads a mode-000 file through CAP_DAC_OVERRIDE and
        // CAP_DAC_READ_SEARCH: the sweep (and every abra it starts) runs
        // without them, still as root, so the state stays writable.
        unsafe {
            c.pre_exec(|| {
                for cap in [1, 2] {
                    if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        code(out.status),
        3,
        "a bad entry is reported in the exit code: {err}"
    );
    let sum: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no summary, the sweep did not go on ({e}): {err}"));
    assert_eq!(
        sum["reaped"],
        serde_json::json!([domains[0], domains[2]]),
        "the sweep went on past the bad entry: {err}"
    );
    assert_eq!(
        sum["bad_entries"],
        serde_json::json!(["env:example-b8.ci.localhost.env", format!("env:{bad}.env")]),
        "{err}"
    );
    assert!(err.contains(&dangling.display().to_string()), "{err}");
    assert!(!err.contains("warm.example.org"), "{err}");
    assert_eq!(
        sum["unmarked"],
        serde_json::json!([]),
        "unreadable is not unmarked"
    );
    assert!(err.contains(&env.display().to_string()), "{err}");
    assert!(
        deployed(&f, bad),
        "an app whose marker could not be read was touched"
    );
    assert!(
        !f.state
            .join("locks/apps")
            .join(format!("{bad}.lock"))
            .exists(),
        "an app whose marker could not be read was probed"
    );
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o644)).unwrap();
    for link in [&dangling, &foreign] {
        std::fs::remove_file(link).unwrap();
    }
    let out = f.cmd().args(["janitor", "--json"]).output().unwrap();
    assert_eq!(code(out.status), 0);
    let sum: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sum["reaped"], serde_json::json!([bad]));
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}

/// `CCCI_JANITOR` takes the words every switch takes (it once took only
/// `on` and `off`, so `CCCI_JANITOR=0` was exit 2), and nothing else.
#[test]
fn every_off_word_turns_the_janitor_off_and_other_words_are_refused() {
    let f = Fixture::new();
    for word in ["off", "0", "false", "no", "OFF"] {
        let out = f
            .cmd()
            .arg("janitor")
            .env("CCCI_JANITOR", word)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(out.status), 0, "{word}: {err}");
        assert!(err.contains("nothing to do"), "{word}: {err}");
    }
    for word in ["y", "maybe"] {
        let out = f
            .cmd()
            .arg("janitor")
            .env("CCCI_JANITOR", word)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(out.status), 2, "{word}: {err}");
        assert!(err.contains("CCCI_JANITOR"), "{word}: {err}");
    }
}
