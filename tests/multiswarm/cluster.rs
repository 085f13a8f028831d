//! The fixture: three Docker engines, each in a network namespace of its
//! own, joined as the three managers of one swarm.
//!
//! Layout of one run (`P` = `ccms<pid>`): namespaces `P-m0`..`P-m2` (one
//! engine each, its `eth0` at 10.213.0.1N/24) and `P-sw`, which holds the
//! bridge joining them and the far ends of their veth pairs (`p0`..`p2`).
//! The bridge lives in a namespace of its own, not the host's: its frames
//! never pass the host's FORWARD chain (which the host's Docker sets to
//! DROP), so the test adds no firewall rule and no host interface, and a
//! cut is `ip link set pN down` inside `P-sw`. The private addresses exist
//! only inside these namespaces, so nothing the engines say leaves them;
//! the tests reach each engine through its unix socket.
//!
//! Each `dockerd` runs with its own data root, exec root, socket, pid file
//! and an empty `--config-file` (the host's `daemon.json` names the host's
//! data root and storage driver), `--storage-driver=vfs`, no iptables, no
//! bridge: the lock needs configs only, never an image or a container.
//! It is started through `nsenter --net=` rather than `ip netns exec`,
//! which remounts `/sys` in a new mount namespace and hides the cgroup
//! mounts dockerd needs.
//!
//! Everything lives under `/tmp/ccci-multiswarm/<pid>`. Dropping the
//! [`Cluster`] (every path: a panic, a setup that failed half-way) stops
//! the engines and waits for them, unmounts what they left, deletes the
//! namespaces and the directory. A run killed hard leaves all of that:
//! [`sweep_stale`] removes the leftovers of every run whose process is gone
//! before a new cluster is made.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Where every run's engines keep their state.
const BASE: &str = "/tmp/ccci-multiswarm";
/// The namespace name prefix of every run (`ccms<pid>-...`).
const NS_PREFIX: &str = "ccms";
/// How long an engine may take to start, stop, or the swarm to settle.
const SETTLE: Duration = Duration::from_secs(90);

/// One manager: an engine in its own network namespace.
pub struct Manager {
    pub index: usize,
    pub dir: PathBuf,
    pub sock: PathBuf,
    pub addr: String,
    pub netns: String,
    daemon: Option<Child>,
}

impl Manager {
    /// `DOCKER_HOST` of this engine.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    /// The real docker CLI talking to this engine.
    pub fn docker(&self) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", self.docker_host())
            .stdin(Stdio::null());
        c
    }

    /// `docker ARGS` on this engine, bounded: Some(stdout) on success.
    pub fn try_docker(&self, args: &[&str]) -> Option<String> {
        let mut c = self.docker();
        c.args(args);
        let out = output_within(c, Duration::from_secs(10))?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dockerd.log"))
            .unwrap();
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.netns))
            .arg("dockerd")
            .arg("--config-file")
            .arg(self.dir.join("daemon.json"))
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("exec"))
            .arg("--host")
            .arg(self.docker_host())
            .arg("--pidfile")
            .arg(self.dir.join("dockerd.pid"))
            .args([
                "--storage-driver=vfs",
                "--iptables=false",
                "--ip-masq=false",
                "--bridge=none",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // The engine dies with this test process (SIGTERM: it cleans up
        // what it can); the sweep of the next run removes the rest.
        // SAFETY: the closure runs between fork and exec and only calls
        // prctl, which is async-signal-safe.
        unsafe {
            use std::os::unix::process::CommandExt;
            c.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.daemon = Some(c.spawn().expect("start dockerd through nsenter"));
        let start = Instant::now();
        loop {
            if self
                .try_docker(&["version", "--format", "{{.Server.Version}}"])
                .is_some()
            {
                break;
            }
            if let Some(d) = self.daemon.as_mut() {
                if let Ok(Some(status)) = d.try_wait() {
                    panic!(
                        "dockerd of manager {} exited ({status}) while starting: {}",
                        self.index,
                        tail_of(&self.dir.join("dockerd.log"))
                    );
                }
            }
            assert!(
                start.elapsed() < SETTLE,
                "dockerd of manager {} did not answer within {SETTLE:?}: {}",
                self.index,
                tail_of(&self.dir.join("dockerd.log"))
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILLs the engine (its containerd follows: dockerd starts it with
    /// a parent-death signal) and reaps it.
    pub fn sigkill(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = kill(Pid::from_raw(d.id() as i32), Signal::SIGKILL);
            let _ = d.wait();
        }
        wait_netns_empty(&self.netns, Duration::from_secs(20));
    }

    /// Starts the engine again on its own state: it rejoins the swarm.
    pub fn restart(&mut self) {
        assert!(self.daemon.is_none(), "manager {} still runs", self.index);
        self.start();
    }

    /// SIGTERM, then SIGKILL after a bound; waits for every process of
    /// its namespace (containerd) to be gone.
    fn stop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = kill(Pid::from_raw(d.id() as i32), Signal::SIGTERM);
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until {
                if let Ok(Some(_)) = d.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
        kill_netns_procs(&self.netns);
    }
}

/// The three-manager swarm.
pub struct Cluster {
    pub root: PathBuf,
    prefix: String,
    pub managers: Vec<Manager>,
    netns: Vec<String>,
}

/// Why this machine cannot make the cluster (None: it can).
pub fn cannot_run() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (network namespaces, dockerd)".into());
    }
    for prog in ["ip", "nsenter", "dockerd", "docker"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {prog}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            let pkg = match prog {
                "ip" => "iproute2",
                "nsenter" => "util-linux",
                "dockerd" => "docker.io",
                _ => "docker.io (or docker-cli)",
            };
            return Some(format!("`{prog}` is not installed (Debian package {pkg})"));
        }
    }
    None
}

impl Cluster {
    /// Makes the namespaces, starts three engines, forms the swarm (the
    /// first initialises it, the other two join as managers) and waits
    /// until every manager is reachable.
    pub fn form() -> Cluster {
        if let Some(why) = cannot_run() {
            panic!("the three-manager swarm tests cannot run here: {why}");
        }
        sweep_stale();
        let pid = std::process::id();
        let root = Path::new(BASE).join(pid.to_string());
        let prefix = format!("{NS_PREFIX}{pid}");
        std::fs::create_dir_all(&root).unwrap();
        // From here on, Drop removes whatever was made.
        let mut c = Cluster {
            root: root.clone(),
            prefix: prefix.clone(),
            managers: Vec::new(),
            netns: Vec::new(),
        };
        let sw = c.add_netns("sw");
        ip(&["-n", &sw, "link", "set", "lo", "up"]);
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        for i in 0..3 {
            let ns = c.add_netns(&format!("m{i}"));
            let port = format!("p{i}");
            ip(&[
                "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
                "netns", &sw,
            ]);
            ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"]);
            let addr = format!("10.213.0.1{i}");
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            let dir = root.join(format!("m{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("daemon.json"), "{}\n").unwrap();
            c.managers.push(Manager {
                index: i,
                sock: dir.join("docker.sock"),
                dir,
                addr,
                netns: ns,
                daemon: None,
            });
        }
        for m in &mut c.managers {
            m.start();
        }
        let first = &c.managers[0];
        let listen = format!("{}:2377", first.addr);
        run_ok(first.docker().args([
            "swarm",
            "init",
            "--advertise-addr",
            &first.addr,
            "--listen-addr",
            &listen,
        ]));
        let token = first
            .try_docker(&["swarm", "join-token", "-q", "manager"])
            .expect("the manager join token");
        for m in &c.managers[1..] {
            run_ok(m.docker().args([
                "swarm",
                "join",
                "--token",
                &token,
                "--advertise-addr",
                &m.addr,
                "--listen-addr",
                &format!("{}:2377", m.addr),
                &listen,
            ]));
        }
        c.wait_healthy();
        c
    }

    fn add_netns(&mut self, name: &str) -> String {
        let ns = format!("{}-{name}", self.prefix);
        ip(&["netns", "add", &ns]);
        self.netns.push(ns.clone());
        ns
    }

    /// The index of the manager that leads now (asked of every reachable
    /// manager; they must agree).
    pub fn leader(&self) -> usize {
        let mut found = None;
        wait_long("a leader every manager agrees on", || {
            let ids: Vec<Option<String>> = self
                .managers
                .iter()
                .map(|m| m.try_docker(&["info", "--format", "{{.Swarm.NodeID}}"]))
                .collect();
            let leaders: Vec<String> = self
                .managers
                .iter()
                .filter_map(|m| {
                    m.try_docker(&[
                        "node",
                        "ls",
                        "--filter",
                        "role=manager",
                        "--format",
                        "{{.ID}} {{.ManagerStatus}}",
                    ])
                })
                .flat_map(|t| {
                    t.lines()
                        .filter(|l| l.ends_with(" Leader"))
                        .map(|l| l.split(' ').next().unwrap_or("").to_string())
                        .collect::<Vec<_>>()
                })
                .collect();
            let Some(first) = leaders.first() else {
                return false;
            };
            // Two managers are a quorum: one may be down or cut off.
            if leaders.len() < 2 || leaders.iter().any(|l| l != first) {
                return false;
            }
            found = ids
                .iter()
                .position(|id| id.as_deref() == Some(first.as_str()));
            found.is_some()
        });
        found.unwrap()
    }

    /// Waits until each of the three managers answers, sees one leader and
    /// two reachable managers, and can write through to the leader (a
    /// probe config created and removed through it).
    pub fn wait_healthy(&self) {
        wait_long("three reachable managers with one leader", || {
            self.managers.iter().all(|m| {
                let Some(text) = m.try_docker(&[
                    "node",
                    "ls",
                    "--filter",
                    "role=manager",
                    "--format",
                    "{{.ManagerStatus}}",
                ]) else {
                    return false;
                };
                let mut st: Vec<&str> = text.lines().collect();
                st.sort_unstable();
                if st != ["Leader", "Reachable", "Reachable"] {
                    return false;
                }
                let probe = format!("ccms-probe-{}", m.index);
                let data = m.dir.join("probe-data");
                std::fs::write(&data, "probe").unwrap();
                let mut c = m.docker();
                c.args(["config", "create", &probe]).arg(&data);
                let ok =
                    output_within(c, Duration::from_secs(10)).is_some_and(|o| o.status.success());
                let _ = m.try_docker(&["config", "rm", &probe]);
                ok
            })
        });
    }

    /// After a failed case: every link up, every killed engine started
    /// again, three reachable managers.
    pub fn recover(&mut self) {
        for i in 0..self.managers.len() {
            self.heal(i);
        }
        for m in &mut self.managers {
            let dead = match m.daemon.as_mut() {
                None => true,
                Some(d) => matches!(d.try_wait(), Ok(Some(_))),
            };
            if dead {
                m.daemon = None;
                m.start();
            }
        }
        self.wait_healthy();
    }

    /// Cuts manager `i` off the bridge: nothing reaches it or leaves it.
    pub fn cut(&self, i: usize) {
        ip(&[
            "-n",
            &self.netns[0],
            "link",
            "set",
            &format!("p{i}"),
            "down",
        ]);
    }

    /// Joins manager `i` to the bridge again.
    pub fn heal(&self, i: usize) {
        ip(&["-n", &self.netns[0], "link", "set", &format!("p{i}"), "up"]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // All three told at once: each shuts down in seconds, not in turn.
        for m in &self.managers {
            if let Some(d) = m.daemon.as_ref() {
                let _ = kill(Pid::from_raw(d.id() as i32), Signal::SIGTERM);
            }
        }
        for m in &mut self.managers {
            m.stop();
        }
        remove_run(&self.root, &self.prefix, &self.netns);
    }
}

/// Removes what a run left: the processes of its namespaces, the mounts
/// under its directory, the namespaces, the directory.
fn remove_run(root: &Path, prefix: &str, netns: &[String]) {
    for ns in netns {
        kill_netns_procs(ns);
    }
    unmount_under(root);
    for ns in netns {
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(Stdio::null())
            .status();
    }
    // Only a directory proven to be a run's own, under BASE.
    if root.parent() == Some(Path::new(BASE))
        && root
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        if let Err(e) = std::fs::remove_dir_all(root) {
            eprintln!("warning: could not remove {}: {e}", root.display());
        }
    }
    let left: Vec<String> = netns_list()
        .into_iter()
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .collect();
    if !left.is_empty() {
        eprintln!("warning: namespaces left: {left:?}");
    }
}

/// The leftovers of every earlier run whose process is gone (a test run
/// killed hard): namespaces `ccms<pid>-*` and directories `BASE/<pid>`.
pub fn sweep_stale() {
    let mut pids: Vec<u32> = Vec::new();
    for ns in netns_list() {
        if let Some(pid) = ns
            .strip_prefix(NS_PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse().ok())
        {
            pids.push(pid);
        }
    }
    if let Ok(rd) = std::fs::read_dir(BASE) {
        pids.extend(
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok())),
        );
    }
    pids.sort_unstable();
    pids.dedup();
    for pid in pids {
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue; // a live run (another test process): its own
        }
        let prefix = format!("{NS_PREFIX}{pid}");
        let netns: Vec<String> = netns_list()
            .into_iter()
            .filter(|n| n.starts_with(&format!("{prefix}-")))
            .collect();
        eprintln!("removing the leftovers of an earlier run (pid {pid}): {netns:?}");
        remove_run(&Path::new(BASE).join(pid.to_string()), &prefix, &netns);
    }
}

fn netns_list() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output();
    out.map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(String::from))
            .collect()
    })
    .unwrap_or_default()
}

fn netns_pids(ns: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// SIGKILLs every process in the namespace (ours only: the engines this
/// run started there and their containerd) and waits for them.
fn kill_netns_procs(ns: &str) {
    for pid in netns_pids(ns) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    wait_netns_empty(ns, Duration::from_secs(20));
}

fn wait_netns_empty(ns: &str, bound: Duration) {
    let until = Instant::now() + bound;
    while !netns_pids(ns).is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Unmounts every mount point under `root`, deepest first.
fn unmount_under(root: &Path) {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = format!("{}/", root.display());
    let mut points: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p.starts_with(&prefix) || p == &root.display().to_string())
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    for p in points {
        let _ = Command::new("umount")
            .arg("--lazy")
            .arg(&p)
            .stderr(Stdio::null())
            .status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_ok(c: &mut Command) {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `c` to its end, killed past `bound` (None then).
pub fn output_within(mut c: Command, bound: Duration) -> Option<std::process::Output> {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let until = Instant::now() + bound;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().ok(),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

fn tail_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Waits until `cond` holds, within the settle bound.
pub fn wait_long(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < SETTLE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
