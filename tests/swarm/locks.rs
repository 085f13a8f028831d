//! One lock authority across runner hosts (SPEC section 11): two "hosts"
//! are two processes with their own state directories (so their flocks
//! cannot arbitrate) and host ids, against the one real swarm.
//!
//! Every test names its domains from its own name and removes every lock
//! object of them on every path ([`Objects`]).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use cc_ci_run::lock::swarm::{now_ms, unix_ms};

use crate::engine::*;
use crate::proxy::{summary, Action, Fate, Gate, Proxy};
use crate::support::*;

/// The lock object name of a domain (as the binary derives it).
pub(crate) fn object(domain: &str) -> String {
    cc_ci_run::lock::swarm::object_name(domain)
}

/// `docker config inspect NAME-or-ID` → (id, labels), None when absent.
pub(crate) fn inspect(name: &str) -> Option<(String, serde_json::Value)> {
    let out = Command::new("docker")
        .args(["config", "inspect", name])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let o = &v[0];
    Some((
        o["ID"].as_str().unwrap().to_string(),
        o["Spec"]["Labels"].clone(),
    ))
}

pub(crate) fn label_u64(labels: &serde_json::Value, key: &str) -> u64 {
    labels[key].as_str().unwrap().parse().unwrap()
}

/// A CCCI_RUN_APP_RE that matches exactly these domains: a janitor in one
/// test never tidies the swarm locks of another test running beside it.
pub(crate) fn gate_of(domains: &[&str]) -> String {
    let alts: Vec<String> = domains.iter().map(|d| d.replace('.', "\\.")).collect();
    format!("^(?:{})$", alts.join("|"))
}

/// Starts a `run --quick` of the example recipe on `host` with these lock
/// settings as runner host `host_id`, and returns once it is paused in its
/// install-tier tests (it holds the app lock then).
pub(crate) fn paused_run(
    host: &SwarmHost,
    domain: &str,
    run_id: &str,
    host_id: &str,
    lease: &[(&str, &str)],
    stderr: Stdio,
) -> Child {
    let child = host
        .run_cmd(domain, &["--quick"])
        .env("CCCI_LOCK_BACKEND", "swarm")
        .envs(lease.iter().copied())
        .env("CCCI_HOST_ID", host_id)
        .env("CCCI_RUN_ID", run_id)
        .env("CCCI_EXAMPLE_HANG", "install")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    wait_for_file(&host.ready.join("test-install"));
    child
}

/// An executable script in `dir`.
pub(crate) fn executable(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = script(dir, name, body);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Removes the lock objects of these domains when dropped (every path).
pub(crate) struct Objects(pub(crate) Vec<String>);

impl Drop for Objects {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = Command::new("docker")
                .args(["config", "rm", &object(d)])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A runner "host": its own state directory and host id, the swarm backend.
pub(crate) struct Host {
    _tmp: tempfile::TempDir,
    pub(crate) state: PathBuf,
    pub(crate) env: Vec<(String, String)>,
}

impl Host {
    pub(crate) fn new(id: &str, backend: &str, lease: (&str, &str, &str)) -> Host {
        let tmp = tempdir();
        let state = tmp.path().join("state");
        Host {
            state,
            env: vec![
                ("CCCI_LOCK_BACKEND".into(), backend.into()),
                ("CCCI_HOST_ID".into(), id.into()),
                ("CCCI_LOCK_LEASE".into(), lease.0.into()),
                ("CCCI_LOCK_RENEW".into(), lease.1.into()),
                ("CCCI_LOCK_MARGIN".into(), lease.2.into()),
            ],
            _tmp: tmp,
        }
    }

    /// Short enough to wait out in a test, long enough that renewals on a
    /// loaded 2-core machine (runs deploying beside it) never let it lapse.
    pub(crate) fn swarm(id: &str) -> Host {
        Host::new(id, "swarm", ("5s", "1s", "1s"))
    }

    pub(crate) fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CCCI_STATE_DIR", &self.state)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    /// `__hold-lock app DOMAIN`, its stderr to `err`; returns once it
    /// printed `held` (or panics after the bound).
    pub(crate) fn hold(&self, domain: &str, err: &Path) -> Holder {
        let h = self.start_hold(domain, err, &[]);
        h.wait_held();
        h
    }

    pub(crate) fn start_hold(&self, domain: &str, err: &Path, extra: &[&str]) -> Holder {
        let mut child = self
            .cmd()
            .args(["__hold-lock", "app", domain, "--progress", "500ms"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(err).unwrap())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send((line, SystemTime::now())).is_err() {
                    break;
                }
            }
        });
        Holder { child, lines: rx }
    }
}

/// A `__hold-lock` process.
pub(crate) struct Holder {
    pub(crate) child: Child,
    pub(crate) lines: mpsc::Receiver<(String, SystemTime)>,
}

/// The bound on a wait for a lease to expire and be taken over.
pub(crate) const LEASE_BOUND: Duration = Duration::from_secs(60);

impl Holder {
    /// Waits for `held`; returns when it was printed.
    pub(crate) fn wait_held(&self) -> SystemTime {
        match self.lines.recv_timeout(LEASE_BOUND) {
            Ok((l, at)) if l == "held" => at,
            other => panic!("expected `held`, got {other:?}"),
        }
    }

    /// Whether it printed `held` within `d` (false: still waiting).
    pub(crate) fn held_within(&self, d: Duration) -> bool {
        matches!(self.lines.recv_timeout(d), Ok((l, _)) if l == "held")
    }

    /// Closes stdin (the holder releases) and waits for its exit code.
    pub(crate) fn release(mut self) -> i32 {
        drop(self.child.stdin.take());
        code(self.child.wait().unwrap())
    }

    pub(crate) fn sigkill(mut self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL).unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn flock_backend_lets_two_hosts_hold_one_domain_at_once() {
    // The reason for the swarm backend: each host's kernel only knows its
    // own flocks, so two runner hosts both "hold" one domain.
    require_swarm();
    let d = domain_for("flock-double-hold", 0);
    let a = Host::new("host-a", "flock", ("30s", "10s", "10s"));
    let b = Host::new("host-b", "flock", ("30s", "10s", "10s"));
    let tmp = tempdir();
    let ha = a.hold(&d, &tmp.path().join("a.err"));
    let hb = b.start_hold(&d, &tmp.path().join("b.err"), &["--try"]);
    assert!(
        hb.held_within(BOUND),
        "host b should (wrongly, by design of flock) hold the domain too: {}",
        std::fs::read_to_string(tmp.path().join("b.err")).unwrap_or_default()
    );
    assert_eq!(ha.release(), 0);
    assert_eq!(hb.release(), 0);
}

#[test]
fn swarm_backend_two_hosts_never_hold_one_domain_at_once_over_200_contended_rounds() {
    require_swarm();
    let d = domain_for("swarm-200-rounds", 0);
    let _objects = Objects(vec![d.clone()]);
    let tmp = tempdir();
    let oracle = tmp.path().join("oracle");
    let hosts = [
        Host::new("host-a", "swarm", ("30s", "10s", "10s")),
        Host::new("host-b", "swarm", ("30s", "10s", "10s")),
    ];
    let children: Vec<Child> = hosts
        .iter()
        .map(|h| {
            h.cmd()
                .args(["__lock-stress", &d, "--iterations", "100", "--oracle"])
                .arg(&oracle)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut waited = 0u64;
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(text.contains("acquired 100 "), "{text}");
        waited += text
            .split_whitespace()
            .last()
            .unwrap()
            .parse::<u64>()
            .unwrap();
    }
    let lines = lines(&oracle);
    assert_eq!(lines.len(), 400, "200 rounds, enter and exit each");
    let mut holder: Option<String> = None;
    let mut per_host = std::collections::HashMap::new();
    for (n, l) in lines.iter().enumerate() {
        let mut w = l.split_whitespace();
        let (what, who) = (w.next().unwrap(), w.next().unwrap().to_string());
        match (what, &holder) {
            ("enter", None) => {
                *per_host
                    .entry(who.split(':').next().unwrap().to_string())
                    .or_insert(0) += 1;
                holder = Some(who);
            }
            ("exit", Some(h)) if *h == who => holder = None,
            _ => panic!("line {n}: `{l}` while {holder:?} holds the lock: two holders at once"),
        }
    }
    assert_eq!(per_host.get("host-a"), Some(&100));
    assert_eq!(per_host.get("host-b"), Some(&100));
    assert!(waited > 0, "the rounds were never contended");
    assert!(inspect(&object(&d)).is_none(), "a lock object was left");
}

#[test]
fn sigkilled_holder_is_taken_over_only_after_its_lease_expired_and_by_its_id() {
    require_swarm();
    let d = domain_for("swarm-sigkill", 0);
    let _objects = Objects(vec![d.clone()]);
    let tmp = tempdir();
    let (a, b) = (Host::swarm("host-a"), Host::swarm("host-b"));
    let ha = a.hold(&d, &tmp.path().join("a.err"));
    let (id1, _) = inspect(&object(&d)).expect("host a's lock object");
    ha.sigkill();
    // Dead holders renew nothing: what is there now is its last lease.
    let (still, labels) = inspect(&object(&d)).expect("the dead holder's object stays");
    assert_eq!(still, id1);
    let expires = label_u64(&labels, "cc-ci.lock.expires-ms");
    let hb = b.start_hold(&d, &tmp.path().join("b.err"), &[]);
    let held_at = hb.wait_held();
    let held_ms = unix_ms(held_at);
    assert!(
        held_ms > expires + 1000,
        "host b took over at {held_ms}, before the lease's expiry {expires} plus the 1s margin"
    );
    let (id2, labels2) = inspect(&object(&d)).expect("host b's lock object");
    assert_ne!(id2, id1, "a take-over creates a new object");
    assert_eq!(labels2["cc-ci.lock.host"], "host-b");
    let err = std::fs::read_to_string(tmp.path().join("b.err")).unwrap();
    assert!(
        err.contains(&format!("removed lock object {id1}")),
        "the stale lock is removed by its ID: {err}"
    );
    assert!(
        err.contains("host host-a"),
        "the wait named the holder: {err}"
    );
    assert_eq!(hb.release(), 0);
    assert!(inspect(&object(&d)).is_none());
}

/// A proxy in front of the engine that holds the first `DELETE
/// /configs/{id}` (a take-over's remove) until `gate` opens: the test sees
/// it held ([`Fate::Held`]) and lets it go on.
fn holding_remove_proxy(dir: &Path, gate: &Gate) -> Proxy {
    let armed = AtomicBool::new(true);
    let gate = gate.clone();
    Proxy::start(dir, "engine-b", move |r| {
        if r.method == "DELETE"
            && r.route().starts_with("/configs/")
            && armed.swap(false, Ordering::SeqCst)
        {
            Action::until(&gate)
        } else {
            Action::pass()
        }
    })
}

#[test]
fn take_over_never_deletes_a_lock_that_a_third_host_recreated_in_between() {
    require_swarm();
    let d = domain_for("swarm-takeover-race", 0);
    let _objects = Objects(vec![d.clone()]);
    let tmp = tempdir();
    let (a, mut b, c) = (
        Host::swarm("host-a"),
        Host::swarm("host-b"),
        Host::swarm("host-c"),
    );
    let gate = Gate::new();
    let proxy = holding_remove_proxy(tmp.path(), &gate);
    b.env.push(("DOCKER_HOST".into(), proxy.host()));

    let ha = a.hold(&d, &tmp.path().join("a.err"));
    let (id1, _) = inspect(&object(&d)).unwrap();
    ha.sigkill();
    // Host b waits, sees the lease expire, and its take-over's remove is
    // held on its way to the engine.
    let hb = b.start_hold(&d, &tmp.path().join("b.err"), &[]);
    let rm = proxy.wait_for("host b's take-over remove held", LEASE_BOUND, |calls| {
        calls
            .iter()
            .find(|c| c.req.method == "DELETE" && c.fate == Fate::Held)
            .cloned()
    });
    assert_eq!(
        rm.req.route(),
        format!("/configs/{id1}"),
        "the take-over removes the expired lease by its ID"
    );
    // Meanwhile a third host takes the expired lock over first.
    assert!(Command::new("docker")
        .args(["config", "rm", &id1])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success());
    let hc = c.hold(&d, &tmp.path().join("c.err"));
    let (id2, labels2) = inspect(&object(&d)).unwrap();
    assert_ne!(id2, id1);
    assert_eq!(labels2["cc-ci.lock.host"], "host-c");
    // Host b goes on: its remove of id1 finds nothing, and host c's lock
    // stays.
    gate.open();
    let answered = proxy.wait_for("host b's held remove answered", BOUND, |calls| {
        calls[rm.n].status
    });
    assert_eq!(
        answered,
        404,
        "the held remove reached the engine after host c's take-over: {}",
        summary(&proxy.calls())
    );
    let b_err = tmp.path().join("b.err");
    wait_until_long("host b waiting for host c", || {
        std::fs::read_to_string(&b_err).is_ok_and(|t| t.contains("host host-c"))
    });
    assert!(
        !hb.held_within(Duration::from_millis(500)),
        "host b holds the lock while host c does"
    );
    let (now, _) = inspect(&object(&d)).expect("host c's lock was deleted");
    assert_eq!(now, id2, "host c's lock object is untouched");
    // Host c lets go: host b acquires a third object.
    assert_eq!(hc.release(), 0);
    hb.wait_held();
    let (id3, labels3) = inspect(&object(&d)).unwrap();
    assert!(id3 != id1 && id3 != id2);
    assert_eq!(labels3["cc-ci.lock.host"], "host-b");
    assert_eq!(hb.release(), 0);
}

pub(crate) fn wait_until_long(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < LEASE_BOUND,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn renewal_keeps_a_long_hold_alive_past_several_lease_periods() {
    require_swarm();
    let d = domain_for("swarm-renewal", 0);
    let _objects = Objects(vec![d.clone()]);
    let tmp = tempdir();
    let lease = ("2s", "500ms", "500ms");
    let a = Host::new("host-a", "swarm", lease);
    let b = Host::new("host-b", "swarm", lease);
    let ha = a.hold(&d, &tmp.path().join("a.err"));
    let (id1, labels) = inspect(&object(&d)).unwrap();
    let first_expiry = label_u64(&labels, "cc-ci.lock.expires-ms");
    // Four lease periods pass; host b tries all along and never gets it.
    let until = Instant::now() + Duration::from_secs(8);
    let mut tries = 0;
    while Instant::now() < until {
        let out = b
            .cmd()
            .args(["__hold-lock", "--try", "app", &d])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            code(out.status),
            75,
            "host b got the lock of a live, renewing holder: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tries += 1;
    }
    assert!(tries > 3);
    let (id, labels) = inspect(&object(&d)).unwrap();
    assert_eq!(id, id1, "the same object, renewed in place");
    let renewals = label_u64(&labels, "cc-ci.lock.renewals");
    assert!(renewals >= 8, "only {renewals} renewals in 8 s at 500 ms");
    assert!(label_u64(&labels, "cc-ci.lock.expires-ms") > first_expiry + 4000);
    assert!(
        now_ms() > first_expiry + 4000,
        "the first lease is long past"
    );
    assert_eq!(ha.release(), 0);
    assert!(inspect(&object(&d)).is_none(), "release removes the object");
    let hb = b.start_hold(&d, &tmp.path().join("b.err"), &["--try"]);
    hb.wait_held();
    assert_eq!(hb.release(), 0);
}

#[test]
fn locks_shows_swarm_leases_and_unlock_refuses_a_live_one_and_removes_an_expired_one_by_id() {
    require_swarm();
    let d = domain_for("swarm-locks-unlock", 0);
    let _objects = Objects(vec![d.clone()]);
    let tmp = tempdir();
    let (a, b) = (Host::swarm("host-a"), Host::swarm("host-b"));
    let ha = a.hold(&d, &tmp.path().join("a.err"));
    let (id1, _) = inspect(&object(&d)).unwrap();
    let report = |h: &Host| -> serde_json::Value {
        let out = h.cmd().args(["locks", "--json"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["backend"], "swarm");
        v["swarm_locks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["domain"] == d.as_str())
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    let r = report(&b);
    assert_eq!(r["state"], "held");
    assert_eq!(r["host"], "host-a");
    assert_eq!(r["id"], id1.as_str());
    assert!(r["expires_in_secs"].as_i64().unwrap() >= 0);
    let human = b.cmd().arg("locks").output().unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains(&d) && text.contains("host host-a"), "{text}");

    let out = b.cmd().args(["unlock", &d]).output().unwrap();
    assert_eq!(code(out.status), 1, "a live lease is never removed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("live lease") && err.contains("host-a"),
        "{err}"
    );
    assert_eq!(inspect(&object(&d)).unwrap().0, id1);

    ha.sigkill();
    wait_until_long("the lease to expire past its margin", || {
        report(&b)["state"] == "expired"
    });
    let out = b.cmd().args(["unlock", &d]).output().unwrap();
    assert_eq!(
        code(out.status),
        0,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(&id1));
    assert!(inspect(&object(&d)).is_none());
    assert!(report(&b).is_null());
}

#[test]
fn bad_domain_names_are_refused_before_any_lock_object_is_created() {
    require_swarm();
    let tmp = tempdir();
    // Every engine call goes through a proxy that records it.
    let proxy = Proxy::passthrough(tmp.path(), "engine");
    let mut h = Host::swarm("host-a");
    h.env.push(("DOCKER_HOST".into(), proxy.host()));
    let long = format!("{}.ci.localhost", "a".repeat(64));
    for bad in [
        "Example.ci.localhost",
        "a..b",
        "a/b",
        "a-.b",
        long.as_str(),
        "a b",
        "",
    ] {
        let out = h
            .cmd()
            .args(["__hold-lock", "--try", "app", bad])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            code(out.status),
            2,
            "{bad:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("app domain"),
            "the error names the field"
        );
        let out = h
            .cmd()
            .args(["__lock-stress", bad, "--iterations", "1", "--oracle"])
            .arg(tmp.path().join("oracle"))
            .output()
            .unwrap();
        assert_eq!(code(out.status), 2, "{bad:?}");
    }
    // A run with a bad --domain is refused by the wrapper, before the
    // harness (and its lock) exist.
    let host = SwarmHost::new(vec![]);
    let out = host
        .cmd()
        .envs(h.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .args([
            "run",
            "--recipe",
            "example",
            "--pr",
            "1",
            "--domain",
            "Bad..domain",
        ])
        .output()
        .unwrap();
    assert_eq!(
        code(out.status),
        2,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        proxy.calls().is_empty(),
        "the engine was called: {}",
        summary(&proxy.calls())
    );
    assert!(!h.state.exists() && !host.state.join("locks").exists());
    // The same environment does reach the engine through the proxy: a
    // call it makes is recorded, so the silence above is not a proxy that
    // nobody talks to.
    let out = h.cmd().args(["locks", "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = proxy.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.req.ccci() && c.req.is("GET", "/configs") && c.status == Some(200)),
        "`locks` listed no lock object through the proxy: {}",
        summary(&calls)
    );
}

#[test]
fn a_swarm_backend_that_cannot_reach_the_engine_fails_with_exit_3_and_never_falls_back_to_flock() {
    require_swarm();
    let d = domain_for("swarm-unreachable", 0);
    let mut h = Host::swarm("host-a");
    h.env.push((
        "DOCKER_HOST".into(),
        "unix:///nonexistent/docker.sock".into(),
    ));
    let out = h
        .cmd()
        .args(["__hold-lock", "--try", "app", &d])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 3, "{err}");
    assert!(
        err.contains("cannot use the engine") && err.contains("not falling back"),
        "{err}"
    );
    assert!(
        !h.state.join("locks/apps").exists(),
        "no flock was taken instead"
    );
}

#[test]
fn a_run_whose_lock_object_is_deleted_behind_its_back_notices_within_one_renewal_and_tears_down() {
    let d = domain_for("swarm-lost-lease", 0);
    let host = SwarmHost::new(vec![d.clone()]);
    let _objects = Objects(vec![d.clone()]);
    let err = host.tmp.path().join("run.err");
    let lease = [
        ("CCCI_LOCK_LEASE", "9s"),
        ("CCCI_LOCK_RENEW", "3s"),
        ("CCCI_LOCK_MARGIN", "3s"),
    ];
    let stderr = Stdio::from(std::fs::File::create(&err).unwrap());
    let mut child = paused_run(&host, &d, "lost", "host-a", &lease, stderr);
    let (id, _) = inspect(&object(&d)).expect("the run's lock object");
    let deleted = SystemTime::now();
    assert!(Command::new("docker")
        .args(["config", "rm", &id])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    let log = std::fs::read_to_string(&err).unwrap();
    assert_eq!(code(status), 3, "{log}");
    let lost_line = log
        .lines()
        .find(|l| l.contains("lost the app lock"))
        .unwrap_or_else(|| panic!("no word of the lost lock: {log}"));
    let at = cc_ci_run::log::parse_timestamp(lost_line.split_whitespace().next().unwrap()).unwrap();
    let noticed = at.duration_since(deleted).unwrap_or_default();
    assert!(
        noticed <= Duration::from_secs(3) + Duration::from_millis(1500),
        "noticed {noticed:?} after the deletion, renewals are 3s apart"
    );
    assert!(log.contains("re-claimed the app lock"), "{log}");
    assert!(log.contains("phase: teardown"), "{log}");
    let left = leftovers(&host, &d);
    assert!(left.is_empty(), "left on the swarm: {left:?}");
    assert!(
        inspect(&object(&d)).is_none(),
        "the re-claimed lock was released"
    );
    assert!(host.lock_free("runs", "lost"));
    let _ = std::io::stdout().flush();
}

#[test]
fn a_janitor_on_another_host_spares_a_live_runs_app_under_the_swarm_lock_and_reaps_it_once_its_lease_is_dead(
) {
    // Two runner hosts that share the abra servers directory see each
    // other's apps; only the swarm lock tells the second host's janitor
    // that the first host's run is alive.
    let d = domain_for("swarm-janitor", 0);
    let host = SwarmHost::new(vec![d.clone()]);
    let _objects = Objects(vec![d.clone()]);
    let lease = [
        ("CCCI_LOCK_BACKEND", "swarm"),
        ("CCCI_LOCK_LEASE", "5s"),
        ("CCCI_LOCK_RENEW", "1s"),
        ("CCCI_LOCK_MARGIN", "1s"),
    ];
    let mut run = paused_run(&host, &d, "live", "host-a", &lease, Stdio::null());
    let other_state = host.tmp.path().join("state-host-b");
    let janitor = || {
        let out = host
            .cmd()
            .env_remove("CCCI_JANITOR")
            .env("CCCI_RUN_APP_RE", gate_of(&[&d]))
            .envs(lease)
            .env("CCCI_HOST_ID", "host-b")
            .env("CCCI_STATE_DIR", &other_state)
            .args(["janitor", "--json"])
            .output()
            .unwrap();
        assert_eq!(
            code(out.status),
            0,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let sum = janitor();
    assert_eq!(sum["skipped_live"], 1, "{sum}");
    assert_eq!(sum["reaped"], serde_json::json!([]));
    assert!(
        !leftovers(&host, &d).is_empty(),
        "the live run's app was touched"
    );
    // Host a dies whole (wrapper and harness): its lease runs out.
    let harness = host.record("live")["pid"].as_i64().unwrap() as i32;
    kill(Pid::from_raw(harness), Signal::SIGKILL).unwrap();
    kill(Pid::from_raw(run.id() as i32), Signal::SIGKILL).unwrap();
    run.wait().unwrap();
    // Every thread of it: a renewer still finishing a call could renew.
    wait_until("the dead run's harness gone", || exited_whole(harness));
    for pid in procs_with_env("CCCI_FAKE_STATE", &host.fake) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let (_, labels) = inspect(&object(&d)).expect("the dead run's lease");
    let expires = label_u64(&labels, "cc-ci.lock.expires-ms");
    wait_until_long("the dead run's lease past expiry and margin", || {
        now_ms() > expires + 1000
    });
    let sum = janitor();
    assert_eq!(sum["reaped"], serde_json::json!([d]), "{sum}");
    assert!(
        leftovers(&host, &d).is_empty(),
        "{:?}",
        leftovers(&host, &d)
    );
    assert!(inspect(&object(&d)).is_none(), "the reap released its lock");
}

#[test]
fn the_janitor_removes_an_expired_swarm_lock_with_no_app_by_its_id_and_keeps_a_live_one() {
    let (dead, live) = (
        domain_for("swarm-janitor-tidy", 0),
        domain_for("swarm-janitor-tidy", 1),
    );
    let host = SwarmHost::new(vec![]);
    let _objects = Objects(vec![dead.clone(), live.clone()]);
    let tmp = tempdir();
    let (a, b) = (Host::swarm("host-a"), Host::swarm("host-b"));
    let hd = a.hold(&dead, &tmp.path().join("dead.err"));
    let (dead_id, _) = inspect(&object(&dead)).unwrap();
    hd.sigkill();
    let (_, labels) = inspect(&object(&dead)).unwrap();
    let expires = label_u64(&labels, "cc-ci.lock.expires-ms");
    let hl = b.hold(&live, &tmp.path().join("live.err"));
    let (live_id, _) = inspect(&object(&live)).unwrap();
    wait_until_long("the dead holder's lease past expiry and margin", || {
        now_ms() > expires + 1000
    });
    let out = host
        .cmd()
        .env_remove("CCCI_JANITOR")
        .env("CCCI_RUN_APP_RE", gate_of(&[&dead, &live]))
        .envs(a.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .args(["janitor", "--json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{err}");
    assert!(err.contains(&dead_id), "{err}");
    assert!(
        inspect(&object(&dead)).is_none(),
        "the expired lock is gone"
    );
    assert_eq!(
        inspect(&object(&live)).unwrap().0,
        live_id,
        "the live lock stays"
    );
    assert_eq!(hl.release(), 0);
}

#[test]
fn a_holder_stopped_past_its_lease_never_revives_it() {
    // A SIGSTOPped holder (or a paused VM) wakes after its lease ran out:
    // another host may already have acted on the expiry, so the holder
    // gives the lock up instead of renewing it.
    require_swarm();
    let d = domain_for("swarm-stopped-holder", 0);
    let _objects = Objects(vec![d.clone()]);
    let tmp = tempdir();
    let a = Host::swarm("host-a");
    let err = tmp.path().join("a.err");
    let ha = a.hold(&d, &err);
    let pid = Pid::from_raw(ha.child.id() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    let (id, labels) = inspect(&object(&d)).unwrap();
    let renewals = label_u64(&labels, "cc-ci.lock.renewals");
    let expires = label_u64(&labels, "cc-ci.lock.expires-ms");
    wait_until_long("the stopped holder's lease to run out", || {
        now_ms() > expires + 200
    });
    kill(pid, Signal::SIGCONT).unwrap();
    wait_until_long("the holder to notice", || {
        std::fs::read_to_string(&err).is_ok_and(|t| t.contains("lost app lock"))
    });
    let text = std::fs::read_to_string(&err).unwrap();
    // Woken past its expiry, the renewal either finds the lease run out or
    // times out against it: given up in both cases, never renewed.
    assert!(
        text.contains("before it could be renewed") || text.contains("before it expired"),
        "{text}"
    );
    let (now_id, labels) = inspect(&object(&d)).expect("nobody removed it yet");
    assert_eq!(now_id, id);
    assert_eq!(
        label_u64(&labels, "cc-ci.lock.renewals"),
        renewals,
        "the lease was revived"
    );
    assert_eq!(ha.release(), 0);
    assert!(
        inspect(&object(&d)).is_none(),
        "release removes the holder's own expired object"
    );
}

#[test]
fn a_waiter_whose_event_stream_fails_still_acquires_by_polling() {
    require_swarm();
    let d = domain_for("swarm-no-events", 0);
    let _objects = Objects(vec![d.clone()]);
    let tmp = tempdir();
    // An engine (or a proxy) without the event stream: `GET /events`
    // answers 500 at once; every other call reaches the real engine.
    let proxy = Proxy::start(tmp.path(), "no-events", |r| {
        if r.route() == "/events" {
            Action::error(500, "events: not here")
        } else {
            Action::pass()
        }
    });
    let a = Host::swarm("host-a");
    let mut b = Host::swarm("host-b");
    b.env.push(("DOCKER_HOST".into(), proxy.host()));
    let ha = a.hold(&d, &tmp.path().join("a.err"));
    let b_err = tmp.path().join("b.err");
    let hb = b.start_hold(&d, &b_err, &[]);
    let refused = proxy.wait_for("host b to try its event stream", LEASE_BOUND, |calls| {
        calls
            .iter()
            .find(|c| c.req.route() == "/events" && c.fate == Fate::Refused(500))
            .cloned()
    });
    assert!(!hb.held_within(Duration::from_millis(300)));
    assert_eq!(ha.release(), 0);
    hb.wait_held();
    let query = refused.req.query();
    assert!(
        query.contains(&format!("\"config\":[\"{}\"]", object(&d))),
        "the refused stream watched another object: {query}"
    );
    assert_eq!(hb.release(), 0);
}

#[test]
fn unlock_terminate_stops_a_swarm_lock_holder_run_on_its_own_host_only() {
    let d = domain_for("swarm-unlock-terminate", 0);
    let host = SwarmHost::new(vec![d.clone()]);
    let _objects = Objects(vec![d.clone()]);
    let lease = [
        ("CCCI_LOCK_BACKEND", "swarm"),
        ("CCCI_LOCK_LEASE", "6s"),
        ("CCCI_LOCK_RENEW", "2s"),
        ("CCCI_LOCK_MARGIN", "2s"),
    ];
    let run_err = host.tmp.path().join("run.err");
    let stderr = Stdio::from(std::fs::File::create(&run_err).unwrap());
    let mut run = paused_run(&host, &d, "held", "host-a", &lease, stderr);
    let unlock = |host_id: &str| {
        host.cmd()
            .envs(lease)
            .env("CCCI_HOST_ID", host_id)
            .args(["unlock", &d, "--terminate", "--wait", "90s"])
            .output()
            .unwrap()
    };
    let out = unlock("host-b");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 1, "{err}");
    assert!(err.contains("runs on host host-a"), "{err}");
    assert!(
        inspect(&object(&d)).is_some(),
        "refused, and nothing removed"
    );
    let out = unlock("host-a");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{err}");
    assert!(err.contains("released"), "{err}");
    assert_eq!(
        code(run.wait().unwrap()),
        143,
        "the run was stopped by SIGTERM"
    );
    assert!(inspect(&object(&d)).is_none());
    assert!(
        leftovers(&host, &d).is_empty(),
        "{:?}: {}",
        leftovers(&host, &d),
        std::fs::read_to_string(&run_err).unwrap_or_default()
    );
}

#[test]
fn a_holder_whose_engine_api_hangs_gives_the_lock_up_by_its_lease_expiry() {
    // The engine answers the holder's acquisition (create, read-back);
    // then its API accepts the renewals' calls (the read by ID, the
    // versioned update) and never answers them: the holder must not
    // believe it holds the lock past the expiry it last wrote.
    require_swarm();
    let d = domain_for("swarm-api-hangs", 0);
    let _objects = Objects(vec![d.clone()]);
    let tmp = tempdir();
    let armed = Arc::new(AtomicBool::new(false));
    let hanging = Arc::clone(&armed);
    let proxy = Proxy::start(tmp.path(), "hung", move |r| {
        let renewal = r.route().starts_with("/configs/")
            && ((r.method == "GET" && r.route() != "/configs/create")
                || (r.method == "POST" && r.route().ends_with("/update")));
        if renewal && hanging.load(Ordering::SeqCst) {
            Action::hang()
        } else {
            Action::pass()
        }
    });
    // Renewals 2 s apart: without the per-renewal budget a hung call ends
    // up to that long after the expiry; with it, at the expiry.
    let mut a = Host::new("host-a", "swarm", ("5s", "2s", "1s"));
    a.env.push(("DOCKER_HOST".into(), proxy.host()));
    let err = tmp.path().join("a.err");
    let ha = a.hold(&d, &err);
    // Held: its first renewal is 2 s after its create.
    armed.store(true, Ordering::SeqCst);
    let (_, labels) = inspect(&object(&d)).unwrap();
    let expires = label_u64(&labels, "cc-ci.lock.expires-ms");
    wait_until_long("the holder to give the lock up", || {
        std::fs::read_to_string(&err).is_ok_and(|t| t.contains("lost app lock"))
    });
    let text = std::fs::read_to_string(&err).unwrap();
    let line = text.lines().find(|l| l.contains("lost app lock")).unwrap();
    assert!(line.contains("before it expired"), "{line}");
    let at = cc_ci_run::log::parse_timestamp(line.split_whitespace().next().unwrap()).unwrap();
    let at_ms = unix_ms(at);
    assert!(
        at_ms <= expires + 500,
        "gave up at {at_ms}, {} ms after its lease expired ({expires})",
        at_ms.saturating_sub(expires)
    );
    let (_, labels) = inspect(&object(&d)).unwrap();
    assert_eq!(
        label_u64(&labels, "cc-ci.lock.renewals"),
        0,
        "no renewal got through"
    );
    let calls = proxy.calls();
    assert!(
        calls.iter().any(|c| c.fate == Fate::Hung),
        "no renewal call was hung: {}",
        summary(&calls)
    );
    assert_eq!(ha.release(), 0);
    assert!(
        inspect(&object(&d)).is_none(),
        "release removed its expired object by ID"
    );
}
