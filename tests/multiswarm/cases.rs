//! The cases: each runs runner "hosts" (the real binary, one state
//! directory and host id each, `DOCKER_HOST` naming one manager) against
//! the three-manager swarm and checks the O_APPEND oracle that
//! `__lock-stress` writes (`enter`/`exit`, `exit ... lost` when a holder
//! inside is refused by `may_mutate`, each line ending `@<unix ms>`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cc_ci_run::lock::swarm::{now_ms, object_name};

use crate::cluster::{output_within, wait_long, Cluster, Manager};
use crate::proxy::{Action, Proxy, Request};
use crate::support::*;

/// Lease, renewal, margin of every host: a call bound ((lease - renew) /
/// 2) of 1 s, ten times an engine call here under load; a dead holder's
/// lease is taken over 4 s after its last write.
const LEASE: (&str, &str, &str) = ("3s", "1s", "1s");
const LEASE_MS: u64 = 3000;
const MARGIN_MS: u64 = 1000;

pub type Case = fn(&mut Cluster, &mut Table);

pub const ALL: &[(&str, Case)] = &[
    ("contention", contention),
    ("leader-killed", leader_killed),
    ("leader-cut", leader_cut),
    ("follower-cut", follower_cut),
    ("lagging-follower", lagging_follower),
    ("run-manager-dies", run_manager_dies),
];

fn reps() -> usize {
    std::env::var("CCCI_DEV_MULTISWARM_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

/// One row of the timing table: times relative to the fault (ms).
pub struct Row {
    case: &'static str,
    rep: usize,
    held: i64,
    noticed: i64,
    acquired: i64,
    overlaps: usize,
    note: String,
}

#[derive(Default)]
pub struct Table(Vec<Row>);

impl Table {
    pub fn print(&self) {
        eprintln!(
            "\n| case | rep | lock held | fault | holder noticed | other holder acquired | overlaps | note |"
        );
        eprintln!("|---|---|---|---|---|---|---|---|");
        let s = |ms: i64| format!("{:+.2} s", ms as f64 / 1000.0);
        for r in &self.0 {
            eprintln!(
                "| {} | {} | {} | 0 | {} | {} | {} | {} |",
                r.case,
                r.rep,
                s(r.held),
                s(r.noticed),
                s(r.acquired),
                r.overlaps,
                r.note
            );
        }
        let mut cases: Vec<&str> = self.0.iter().map(|r| r.case).collect();
        cases.dedup();
        eprintln!("\n| case | reps | noticed (min / max) | acquired (min / max) | overlaps |");
        eprintln!("|---|---|---|---|---|");
        for c in cases {
            let rows: Vec<&Row> = self.0.iter().filter(|r| r.case == c).collect();
            let (n, a): (Vec<i64>, Vec<i64>) = rows.iter().map(|r| (r.noticed, r.acquired)).unzip();
            eprintln!(
                "| {c} | {} | {} / {} | {} / {} | {} |",
                rows.len(),
                s(*n.iter().min().unwrap()),
                s(*n.iter().max().unwrap()),
                s(*a.iter().min().unwrap()),
                s(*a.iter().max().unwrap()),
                rows.iter().map(|r| r.overlaps).sum::<usize>()
            );
        }
    }
}

/// A runner host: its own state directory and host id, the swarm lock
/// backend, one manager's socket, reached through a proxy that passes
/// everything on and records it (which tells when the host watches the
/// lock object).
pub struct Host {
    /// Before `_tmp`, which holds its socket.
    proxy: Proxy,
    _tmp: tempfile::TempDir,
    id: String,
    state: PathBuf,
    docker_host: String,
}

impl Host {
    pub fn on(id: &str, m: &Manager) -> Host {
        let tmp = tempdir();
        let sock = m.sock.clone();
        let proxy = Proxy::start(tmp.path(), "engine", move |_| Action::pass().via(&sock));
        Host {
            state: tmp.path().join("state"),
            id: id.to_string(),
            docker_host: proxy.host(),
            proxy,
            _tmp: tmp,
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CCCI_STATE_DIR", &self.state)
            .env("CCCI_LOCK_BACKEND", "swarm")
            .env("CCCI_HOST_ID", &self.id)
            .env("CCCI_LOCK_LEASE", LEASE.0)
            .env("CCCI_LOCK_RENEW", LEASE.1)
            .env("CCCI_LOCK_MARGIN", LEASE.2)
            .env("DOCKER_HOST", &self.docker_host)
            .stdin(Stdio::null());
        c
    }

    /// `__lock-stress DOMAIN --iterations N --hold HOLD`, stderr to `err`.
    pub fn stress(&self, d: &str, oracle: &Path, n: u32, hold: &str, err: &Path) -> Child {
        self.cmd()
            .args([
                "__lock-stress",
                d,
                "--iterations",
                &n.to_string(),
                "--hold",
                hold,
            ])
            .arg("--oracle")
            .arg(oracle)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(err).unwrap())
            .spawn()
            .unwrap()
    }
}

/// One oracle line.
#[derive(Debug)]
pub struct Event {
    enter: bool,
    host: String,
    lost: bool,
    ms: u64,
}

/// Reads the oracle; counts every `enter` while someone is inside.
pub fn oracle(path: &Path) -> (Vec<Event>, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut events = Vec::new();
    let mut inside: Option<String> = None;
    let mut overlaps = 0;
    for l in text.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        let who = w[1].to_string();
        let e = Event {
            enter: w[0] == "enter",
            host: who.split(':').next().unwrap().to_string(),
            lost: w.contains(&"lost"),
            ms: w.last().unwrap().trim_start_matches('@').parse().unwrap(),
        };
        match (e.enter, &inside) {
            (true, None) => inside = Some(who),
            (true, Some(_)) => {
                overlaps += 1;
                eprintln!("OVERLAP: `{l}` while {inside:?} is inside\n{text}");
                inside = Some(who);
            }
            (false, Some(h)) if *h == who => inside = None,
            (false, _) => panic!("`{l}` without its enter:\n{text}"),
        }
        events.push(e);
    }
    (events, overlaps)
}

/// Waits for a host's process: its exit code and stderr.
fn finish(c: Child, err: &Path) -> (i32, String) {
    let out = c.wait_with_output().unwrap();
    (
        code(out.status),
        std::fs::read_to_string(err).unwrap_or_default(),
    )
}

/// Whether host `h` watches its lock object (a waiter that found the
/// lock busy): its event stream of a config is live and open.
fn watching(h: &Host) -> bool {
    h.proxy.calls().iter().any(|c| {
        c.req.route() == "/events"
            && c.req.query().contains("\"type\":[\"config\"]")
            && c.live.is_some()
            && c.ended.is_none()
    })
}

/// When a taker removed the lease object `id`, and the engine's
/// `UpdatedAt` of it then (Unix ms), from its line `... last written <time>
/// by the engine's clock ... removed lock object <id> to take it over`.
fn takeover(taker_err: &str, id: &str) -> Option<(u64, u64)> {
    let line = taker_err
        .lines()
        .find(|l| l.contains(&format!("removed lock object {id} ")))?;
    let at = |ts: &str| cc_ci_run::log::parse_timestamp(ts).map(cc_ci_run::lock::swarm::unix_ms);
    let removed = at(line.split_whitespace().next()?)?;
    let written = at(line
        .split("last written ")
        .nth(1)?
        .split_whitespace()
        .next()?)?;
    Some((removed, written))
}

#[derive(Clone, Copy)]
enum Fault {
    Kill,
    Cut,
}

/// One repetition: host a (on manager `a`) holds and stays inside; hosts
/// b and c (on the other two) wait; manager `fault_on` is killed or cut.
/// Host a must leave (`exit ... lost`) before anyone else enters, and the
/// taker must have waited for the lease's expiry by the engine's clock
/// (`UpdatedAt` + lease + margin). Then the fault is undone.
fn fault_rep(
    cl: &mut Cluster,
    table: &mut Table,
    case: &'static str,
    rep: usize,
    a: usize,
    fault: Fault,
) {
    let (b, c) = match a {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    let tmp = tempdir();
    let d = format!("{case}-{rep}.ci.localhost");
    let o = tmp.path().join("oracle");
    let hosts = [
        Host::on("host-a", &cl.managers[a]),
        Host::on("host-b", &cl.managers[b]),
        Host::on("host-c", &cl.managers[c]),
    ];
    let errs: Vec<PathBuf> = (0..3)
        .map(|i| tmp.path().join(format!("{i}.err")))
        .collect();
    let ha = hosts[0].stress(&d, &o, 1, "120s", &errs[0]);
    wait_long("host a inside", || {
        std::fs::read_to_string(&o).is_ok_and(|t| t.contains("enter host-a"))
    });
    let id_a = cl.managers[a]
        .try_docker(&["config", "inspect", &object_name(&d), "--format", "{{.ID}}"])
        .expect("host a's lock object");
    let hb = hosts[1].stress(&d, &o, 1, "0s", &errs[1]);
    let hc = hosts[2].stress(&d, &o, 1, "0s", &errs[2]);
    wait_long("hosts b and c waiting (watching the lock object)", || {
        watching(&hosts[1]) && watching(&hosts[2])
    });
    let fault_ms = now_ms();
    match fault {
        Fault::Kill => cl.managers[a].sigkill(),
        Fault::Cut => cl.cut(a),
    }
    let (code_a, err_a) = finish(ha, &errs[0]);
    let (code_b, err_b) = finish(hb, &errs[1]);
    let (code_c, err_c) = finish(hc, &errs[2]);
    match fault {
        Fault::Kill => cl.managers[a].restart(),
        Fault::Cut => cl.heal(a),
    }
    let (events, overlaps) = oracle(&o);
    assert_eq!(overlaps, 0, "two holders at once");
    assert_eq!(code_a, 3, "host a (its manager {case}): {err_a}");
    assert_eq!(code_b, 0, "host b: {err_b}");
    assert_eq!(code_c, 0, "host c: {err_c}");
    let noticed = events
        .iter()
        .find(|e| !e.enter && e.host == "host-a")
        .expect("host a left");
    assert!(noticed.lost, "host a left without noticing the loss");
    let held = events
        .iter()
        .find(|e| e.enter && e.host == "host-a")
        .unwrap();
    let next = events
        .iter()
        .find(|e| e.enter && e.host != "host-a")
        .expect("another host entered");
    assert!(next.ms >= noticed.ms, "{events:?}");
    // Whoever removed host a's object took its lease over: only once the
    // engine's clock was past its last write + lease + margin.
    let (removed, written) = [&err_b, &err_c]
        .iter()
        .find_map(|t| takeover(t, &id_a))
        .unwrap_or_else(|| {
            panic!(
                "nobody took host a's lease ({id_a}) over:\n{err_a}\n{err_b}\n{err_c}\n{}",
                std::fs::read_to_string(&o).unwrap_or_default()
            )
        });
    assert!(
        removed > written + LEASE_MS + MARGIN_MS,
        "host a's lease was removed at {removed}, before its last write {written} + lease + margin"
    );
    assert!(
        noticed.ms <= written + LEASE_MS,
        "host a believed past its last write + lease: noticed {} written {written}",
        noticed.ms
    );
    table.0.push(Row {
        case,
        rep,
        held: held.ms as i64 - fault_ms as i64,
        noticed: noticed.ms as i64 - fault_ms as i64,
        acquired: next.ms as i64 - fault_ms as i64,
        overlaps,
        note: format!(
            "manager {a} ({}); last write {:+.2} s",
            match fault {
                Fault::Kill => "killed",
                Fault::Cut => "cut",
            },
            (written as i64 - fault_ms as i64) as f64 / 1000.0
        ),
    });
    cl.wait_healthy();
}

fn contention(cl: &mut Cluster, table: &mut Table) {
    // Three hosts, each through another manager, 10 rounds each.
    let tmp = tempdir();
    let d = "contention.ci.localhost";
    let o = tmp.path().join("oracle");
    let ids = ["host-a", "host-b", "host-c"];
    let hosts: Vec<Host> = (0..3).map(|i| Host::on(ids[i], &cl.managers[i])).collect();
    let errs: Vec<PathBuf> = (0..3)
        .map(|i| tmp.path().join(format!("{i}.err")))
        .collect();
    let start = now_ms();
    let children: Vec<Child> = (0..3)
        .map(|i| hosts[i].stress(d, &o, 10, "50ms", &errs[i]))
        .collect();
    let mut waited = 0;
    for (c, e) in children.into_iter().zip(&errs) {
        let out = c.wait_with_output().unwrap();
        let text = std::fs::read_to_string(e).unwrap_or_default();
        assert_eq!(code(out.status), 0, "{text}");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(stdout.contains("acquired 10 "), "{stdout}");
        waited += stdout
            .split_whitespace()
            .last()
            .unwrap()
            .parse::<u64>()
            .unwrap();
    }
    let (events, overlaps) = oracle(&o);
    assert_eq!(overlaps, 0);
    for id in ids {
        assert_eq!(
            events.iter().filter(|e| e.enter && e.host == id).count(),
            10,
            "{id}"
        );
    }
    assert!(waited > 0, "the rounds were never contended");
    table.0.push(Row {
        case: "contention",
        rep: 30,
        held: 0,
        noticed: 0,
        acquired: (now_ms() - start) as i64,
        overlaps,
        note: format!("3 hosts x 10 rounds through managers 0, 1, 2; {waited} rounds waited"),
    });
}

fn leader_killed(cl: &mut Cluster, table: &mut Table) {
    for rep in 0..reps() {
        let l = cl.leader();
        fault_rep(cl, table, "leader-killed", rep, l, Fault::Kill);
    }
}

fn leader_cut(cl: &mut Cluster, table: &mut Table) {
    for rep in 0..reps() {
        let l = cl.leader();
        fault_rep(cl, table, "leader-cut", rep, l, Fault::Cut);
    }
}

fn follower_cut(cl: &mut Cluster, table: &mut Table) {
    for rep in 0..reps() {
        let l = cl.leader();
        let f = (l + 1 + rep % 2) % 3;
        fault_rep(cl, table, "follower-cut", rep, f, Fault::Cut);
    }
}

/// `__hold-lock --try app D` on `h`: its exit code and stderr (it
/// releases at once: stdin is empty).
fn try_hold(h: &Host, d: &str) -> (i32, String) {
    let mut c = h.cmd();
    c.args(["__hold-lock", "--try", "app", d]);
    let out = output_within(c, Duration::from_secs(30)).expect("__hold-lock --try ended");
    (
        code(out.status),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn lagging_follower(cl: &mut Cluster, table: &mut Table) {
    // Host c's manager misses the lock's changes (cut off while host a
    // releases and host b takes and releases the lock through the others),
    // then comes back: whatever it answers must be the swarm's current
    // state, never the object it last saw.
    for rep in 0..reps() {
        let l = cl.leader();
        let f = (l + 1 + rep % 2) % 3;
        let m = 3 - l - f;
        let d = format!("lagging-{rep}.ci.localhost");
        let tmp = tempdir();
        let a = Host::on("host-a", &cl.managers[l]);
        let b = Host::on("host-b", &cl.managers[m]);
        let c = Host::on("host-c", &cl.managers[f]);
        let o = tmp.path().join("oracle");
        // Host a holds; host c sees it held (its manager is in step).
        let mut ha = a
            .cmd()
            .args(["__hold-lock", "app", &d])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(tmp.path().join("a.err")).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(ha.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "held");
        let held_ms = now_ms();
        let (code_c, err) = try_hold(&c, &d);
        assert_eq!(code_c, 75, "{err}");
        assert!(err.contains("host-a"), "{err}");
        let fault_ms = now_ms();
        cl.cut(f);
        // Host a leaves; host b takes the lock and leaves, several times.
        let released_ms = now_ms();
        drop(ha.stdin.take());
        assert_eq!(code(ha.wait().unwrap()), 0, "host a released");
        let hb = b.stress(&d, &o, 3, "0s", &tmp.path().join("b.err"));
        let out = hb.wait_with_output().unwrap();
        assert_eq!(
            code(out.status),
            0,
            "{}",
            std::fs::read_to_string(tmp.path().join("b.err")).unwrap_or_default()
        );
        // Cut off, host c's manager cannot answer about the lock: its
        // try fails (exit 3). Its create may still land once the manager is
        // back (the engine forwards it when it reaches the leader): a lease
        // of host c's that nobody holds, the current state, not a stale one.
        let (code_cut, err) = try_hold(&c, &d);
        assert!(
            code_cut == 3,
            "a manager cut off from the others answered ({code_cut}): {err}"
        );
        cl.heal(f);
        let healed = Instant::now();
        // Back: host c waits for the lock. Its reads name the current
        // holder, if any: never host a or host b, whose objects are gone.
        let c_err = tmp.path().join("c.err");
        let mut hc = c
            .cmd()
            .args([
                "__hold-lock",
                "app",
                &d,
                "--wait",
                "60s",
                "--progress",
                "100ms",
            ])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&c_err).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(hc.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let answered = healed.elapsed();
        let waited = std::fs::read_to_string(&c_err).unwrap_or_default();
        assert_eq!(line.trim(), "held", "{waited}");
        assert_eq!(code(hc.wait().unwrap()), 0, "{waited}");
        for l in waited.lines().filter(|l| l.contains("held by")) {
            assert!(
                !l.contains("host host-a") && !l.contains("host host-b"),
                "a stale `held` through the lagging manager: {l}\n{waited}"
            );
        }
        let ghost = waited.contains("host host-c");
        let (_, overlaps) = oracle(&o);
        assert_eq!(overlaps, 0);
        let back = now_ms();
        table.0.push(Row {
            case: "lagging-follower",
            rep,
            held: held_ms as i64 - fault_ms as i64,
            noticed: released_ms as i64 - fault_ms as i64,
            acquired: back as i64 - fault_ms as i64,
            overlaps,
            note: format!(
                "manager {f} cut; noticed: a released; b held 3 times; acquired: c held, {:.2} s after the heal{}",
                answered.as_secs_f64(),
                if ghost {
                    " (after its own create sent while cut off landed and expired)"
                } else {
                    ""
                }
            ),
        });
        cl.wait_healthy();
    }
}

/// Whether a call is the swarm lock's: its objects (`/configs...`), the
/// engine's time (`GET /info`), the events of a lock object.
fn lock_call(r: &Request) -> bool {
    r.route().starts_with("/configs")
        || r.route() == "/info"
        || (r.route() == "/events" && r.query().contains("\"type\":[\"config\"]"))
}

/// An engine proxy for a run whose app lives in the stand-ins' file-backed
/// swarm (the stand-in engine at `stand_in`) and whose lock lives on the
/// real three-manager swarm (`manager`): the lock's calls go to the
/// manager, everything else (the version's ping too) to the stand-in.
fn split_engine(dir: &Path, stand_in: &str, manager: &Manager) -> Proxy {
    let fake = PathBuf::from(stand_in.strip_prefix("unix://").unwrap_or(stand_in));
    let real = manager.sock.clone();
    Proxy::start(dir, "split", move |r| {
        if lock_call(r) {
            Action::pass().via(&real)
        } else {
            Action::pass().via(&fake)
        }
    })
}

fn run_manager_dies(cl: &mut Cluster, table: &mut Table) {
    // A real `run` (the stand-in abra, file backend) holds the app lock on
    // the swarm through a follower; that manager is SIGKILLed while the
    // run is in its tests. Its renewals cannot reach the swarm: it stops
    // its work when its lease may no longer be used, cannot claim the lock
    // again through its dead manager, leaves the app alone and exits 3.
    // Host b (through the leader) takes over only after the engine's
    // expiry; from the loss on the run makes no mutating abra call.
    for rep in 0..reps() {
        let l = cl.leader();
        let f = (l + 1 + rep % 2) % 3;
        let f_ = Fixture::new();
        let split = split_engine(f_.tmp.path(), &f_.engine.host, &cl.managers[f]);
        let d = format!("example-run{rep}.ci.localhost");
        let err = f_.tmp.path().join("run.err");
        let mut run = f_
            .run_cmd(&["--pr", "1", "--domain", &d, "--quick"])
            .env("CCCI_DOCKER", fake_dir().join("docker"))
            .env("DOCKER_HOST", split.host())
            .env("CCCI_LOCK_BACKEND", "swarm")
            .env("CCCI_HOST_ID", "host-a")
            .env("CCCI_LOCK_LEASE", LEASE.0)
            .env("CCCI_LOCK_RENEW", LEASE.1)
            .env("CCCI_LOCK_MARGIN", LEASE.2)
            .env("CCCI_RUN_ID", format!("dies-{rep}"))
            .env("CCCI_EXAMPLE_HANG", "install")
            .env("CCCI_JANITOR", "off")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        wait_for_file(&f_.ready.join("test-install"));
        let id_run = cl.managers[f]
            .try_docker(&["config", "inspect", &object_name(&d), "--format", "{{.ID}}"])
            .expect("the run's lock object");
        let b = Host::on("host-b", &cl.managers[l]);
        let o = f_.tmp.path().join("oracle");
        let hb = b.stress(&d, &o, 1, "0s", &f_.tmp.path().join("b.err"));
        wait_long("host b waiting", || watching(&b));
        let fault_ms = now_ms();
        cl.managers[f].sigkill();
        let status = run.wait().unwrap();
        let out = hb.wait_with_output().unwrap();
        cl.managers[f].restart();
        let log = std::fs::read_to_string(&err).unwrap();
        assert_eq!(code(status), 3, "{log}");
        let b_err = std::fs::read_to_string(f_.tmp.path().join("b.err")).unwrap_or_default();
        assert_eq!(code(out.status), 0, "{b_err}");
        let (removed, written) = takeover(&b_err, &id_run)
            .unwrap_or_else(|| panic!("host b did not take the run's lease over: {b_err}"));
        assert!(
            removed > written + LEASE_MS + MARGIN_MS,
            "the run's lease was removed at {removed}, before its last write {written} + lease + margin"
        );
        let held_line = log
            .lines()
            .find(|l| l.contains("holding the app lock"))
            .unwrap_or_else(|| panic!("{log}"));
        let held_ms = cc_ci_run::lock::swarm::unix_ms(
            cc_ci_run::log::parse_timestamp(held_line.split_whitespace().next().unwrap()).unwrap(),
        );
        let lost_line = log
            .lines()
            .find(|l| l.contains("lost the app lock"))
            .unwrap_or_else(|| panic!("no word of the lost lock: {log}"));
        let lost_ms = cc_ci_run::lock::swarm::unix_ms(
            cc_ci_run::log::parse_timestamp(lost_line.split_whitespace().next().unwrap()).unwrap(),
        );
        assert!(log.contains("could not claim the app lock again"), "{log}");
        let (events, overlaps) = oracle(&o);
        assert_eq!(overlaps, 0);
        let b_in = events.iter().find(|e| e.enter).unwrap().ms;
        assert!(
            b_in > lost_ms,
            "host b entered before the run knew it lost the lock"
        );
        let mutating = [
            "new",
            "deploy",
            "deploy-chaos",
            "undeploy",
            "rm",
            "backup",
            "restore",
        ];
        let calls = f_.calls();
        assert!(
            calls
                .iter()
                .any(|c| c["step"].as_str().unwrap_or("").starts_with("deploy")
                    && c["ts"].as_u64().unwrap() / 1_000_000 < fault_ms),
            "the run deployed: {calls:?}"
        );
        let after: Vec<_> = calls
            .iter()
            .filter(|c| {
                c["prog"] == "abra"
                    && mutating.contains(&c["step"].as_str().unwrap_or(""))
                    && c["ts"].as_u64().unwrap() / 1_000_000 >= lost_ms
            })
            .collect();
        assert!(
            after.is_empty(),
            "mutating abra calls after the lease was lost: {after:?}\n{log}"
        );
        table.0.push(Row {
            case: "run-manager-dies",
            rep,
            held: held_ms as i64 - fault_ms as i64,
            noticed: lost_ms as i64 - fault_ms as i64,
            acquired: b_in as i64 - fault_ms as i64,
            overlaps,
            note: format!("the run's manager {f} killed in its tests; exit 3, no mutating call after the loss; last write {:+.2} s", (written as i64 - fault_ms as i64) as f64 / 1000.0),
        });
        cl.wait_healthy();
    }
}
