//! An engine proxy for fault injection: a unix socket the test owns, in
//! front of an engine's socket, that cc-ci-run is pointed at with
//! `DOCKER_HOST=unix://<socket>` ([`Proxy::host`]). It passes each Engine
//! API call on and, as the test's hook decides from the request (method,
//! path, the caller's pid), delays or holds it before forwarding, hangs it
//! (never answers), answers it with an error of its own, sends it to
//! another engine, holds back the engine's answer or acts on it when it
//! arrives (before the caller can read it); and it lets the test close a
//! connection (an event stream) at will ([`Proxy::kill`]). Every request is
//! recorded ([`Proxy::calls`]), so a test can prove the fault it injected
//! happened (and that a call it forbids was never made).
//!
//! One request per connection is looked at: cc-ci-run sends one, with
//! `Connection: close` (a body only with `Content-Length`). A keep-alive
//! client (the docker CLI) has its first request looked at and the rest of
//! its connection piped unseen; [`real_docker_dir`] keeps the CLI that a
//! run starts (abra, the recipe's tests) off the proxy altogether.
//!
//! Threads and std only (with nix's poll and libc's SO_PEERCRED); every
//! wait ticks at 20 ms, so dropping the [`Proxy`] stops every thread and
//! closes every connection within a tick or two.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// The tick of every wait of a connection's thread (ms).
const TICK: u16 = 20;

/// The largest request or answer head looked at.
const MAX_HEAD: usize = 64 << 10;

/// The head the proxy sends itself for [`Action::early_head`]: what the
/// engine answers to `GET /events` (a chunked stream).
const EARLY_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\nServer: ccci-test-proxy\r\nTransfer-Encoding: chunked\r\n\r\n";

/// The engine's socket the tests use: the test process's `DOCKER_HOST`
/// (`unix://PATH`), else the default socket.
pub fn real_engine() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

/// A directory holding a `docker` that runs the real CLI on the real
/// engine ([`real_engine`]) whatever `DOCKER_HOST` its caller has: put
/// first on a run's PATH (the stand-in abra takes the first `docker` on
/// PATH) and named by `CCCI_DOCKER` (the recipe's tests), it keeps the
/// CLI a run starts off the proxy that cc-ci-run itself talks through.
pub fn real_docker_dir(dir: &Path) -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", "command -v docker"])
        .output()
        .unwrap();
    let real = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!real.is_empty(), "no docker CLI on PATH");
    let bin = dir.join("real-docker");
    std::fs::create_dir_all(&bin).unwrap();
    let path = bin.join("docker");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n# The real docker CLI on the real engine, not the test's proxy.\nDOCKER_HOST='unix://{}' exec '{real}' \"$@\"\n",
            real_engine().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// Points `cmd` (cc-ci-run) at `proxy`, and the docker CLI it starts (the
/// stand-in abra's, the recipe's tests') at the real engine
/// ([`real_docker_dir`] first on PATH, and `CCCI_DOCKER`).
pub fn through(cmd: &mut Command, proxy: &Proxy, dir: &Path) {
    let bin = real_docker_dir(dir);
    let path = cmd
        .get_envs()
        .find(|(k, _)| *k == "PATH")
        .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
        .unwrap_or_else(|| std::env::var("PATH").unwrap_or_default());
    cmd.env("DOCKER_HOST", proxy.host())
        .env("CCCI_DOCKER", bin.join("docker"))
        .env("PATH", format!("{}:{path}", bin.display()));
}

/// One request, as the hook sees it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The path without the API version (`/configs/create`, `/events?…`),
    /// its query as sent (percent-encoded).
    pub path: String,
    /// The calling process (SO_PEERCRED of the connection; 0 if unknown).
    pub pid: i32,
    /// Its `User-Agent` (cc-ci-run sends `cc-ci-run`).
    pub agent: String,
}

impl Request {
    /// The path without its query.
    pub fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }

    /// The query, percent-decoded (`filters={"type":["config"],…}`).
    pub fn query(&self) -> String {
        decode(self.path.split_once('?').map_or("", |(_, q)| q))
    }

    /// `METHOD ROUTE`, exactly.
    pub fn is(&self, method: &str, route: &str) -> bool {
        self.method == method && self.route() == route
    }

    /// Whether cc-ci-run sent it (not a docker CLI).
    pub fn ccci(&self) -> bool {
        self.agent.starts_with("cc-ci-run")
    }
}

/// What happens to a request before it is forwarded.
pub enum Before {
    Now,
    /// Forwarded this much later.
    Delay(Duration),
    /// Forwarded once the gate is opened.
    Until(Gate),
}

/// Who answers.
pub enum Reply {
    /// The engine.
    Forward,
    /// Nobody: the connection stays open, unanswered, until the client
    /// closes it.
    Hang,
    /// The proxy, with this status and `{"message": …}`; the engine never
    /// sees the request.
    Error(u16, String),
}

type OnAnswer = Box<dyn FnOnce(&Request, u16) + Send>;

/// What the proxy does with one request (see the builders).
pub struct Action {
    upstream: Option<PathBuf>,
    before: Before,
    early_head: bool,
    reply: Reply,
    hold_answer: Duration,
    on_answer: Option<OnAnswer>,
}

impl Action {
    /// Forwarded at once; the answer piped back as it comes.
    pub fn pass() -> Action {
        Action {
            upstream: None,
            before: Before::Now,
            early_head: false,
            reply: Reply::Forward,
            hold_answer: Duration::ZERO,
            on_answer: None,
        }
    }

    /// Forwarded `d` later.
    pub fn delay(d: Duration) -> Action {
        Action {
            before: Before::Delay(d),
            ..Action::pass()
        }
    }

    /// Forwarded once `gate` opens.
    pub fn until(gate: &Gate) -> Action {
        Action {
            before: Before::Until(gate.clone()),
            ..Action::pass()
        }
    }

    /// Never answered.
    pub fn hang() -> Action {
        Action {
            reply: Reply::Hang,
            ..Action::pass()
        }
    }

    /// Answered by the proxy: `status`, `{"message": message}`.
    pub fn error(status: u16, message: &str) -> Action {
        Action {
            reply: Reply::Error(status, message.to_string()),
            ..Action::pass()
        }
    }

    /// Forwarded to the engine at `socket` instead of the proxy's own.
    pub fn via(mut self, socket: &Path) -> Action {
        self.upstream = Some(socket.to_path_buf());
        self
    }

    /// For an event stream: the proxy answers `200` with a chunked head at
    /// once and forwards the request only after its [`Before`]; the
    /// engine's body then follows the early head (its own head is
    /// dropped). The caller believes its stream live while the engine does
    /// not know of it yet.
    pub fn early_head(mut self) -> Action {
        self.early_head = true;
        self
    }

    /// The engine's answer reaches the caller `d` after it arrived.
    pub fn hold_answer(mut self, d: Duration) -> Action {
        self.hold_answer = d;
        self
    }

    /// Runs `f(request, status)` when the engine's answer head arrives,
    /// before any of it is passed on (`f` must not block).
    pub fn on_answer(mut self, f: impl FnOnce(&Request, u16) + Send + 'static) -> Action {
        self.on_answer = Some(Box::new(f));
        self
    }
}

/// A gate for [`Action::until`]: closed until opened.
#[derive(Clone, Debug, Default)]
pub struct Gate(Arc<AtomicBool>);

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    pub fn open(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn is_open(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Where a request is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Held before forwarding (a delay or a gate).
    Held,
    /// Passed to the engine.
    Forwarded,
    /// Left unanswered.
    Hung,
    /// Answered by the proxy with this status.
    Refused(u16),
    /// The client left before it was forwarded.
    Abandoned,
    /// The engine's socket could not be reached: the connection was closed
    /// unanswered.
    Unreachable,
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The client closed it.
    Client,
    /// The engine (or the proxy's own answer) finished it.
    Engine,
    /// [`Proxy::kill`].
    Killed,
    /// The proxy was dropped.
    Stopped,
    /// Something the proxy could not pass on (see [`Call::error`]).
    Broken,
}

/// One request and what became of it.
#[derive(Clone, Debug)]
pub struct Call {
    /// Its index in [`Proxy::calls`].
    pub n: usize,
    pub req: Request,
    /// When its head was read.
    pub at: SystemTime,
    pub fate: Fate,
    /// How long it was held before being forwarded.
    pub held_for: Option<Duration>,
    /// When it was forwarded.
    pub sent: Option<SystemTime>,
    /// When the engine's answer head arrived (an event stream is live on
    /// the engine from then).
    pub live: Option<SystemTime>,
    /// The engine's status.
    pub status: Option<u16>,
    /// The answer was held back ([`Action::hold_answer`]).
    pub answer_held: bool,
    /// The [`Action::on_answer`] callback ran.
    pub on_answer_ran: bool,
    /// When and how the connection ended.
    pub ended: Option<(SystemTime, End)>,
    /// What the proxy could not pass on.
    pub error: Option<String>,
    /// The body of a `GET /events` answer, as it came (transfer-coded).
    body: Vec<u8>,
    chunked: bool,
}

impl Call {
    /// The lines of a recorded event stream's body.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.chunked {
            let mut d = cc_ci_run::ext::docker::api::Dechunk::default();
            d.feed(&self.body, &mut out)
                .expect("the engine's chunked answer");
        } else {
            out = self.body.clone();
        }
        String::from_utf8_lossy(&out)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(String::from)
            .collect()
    }

    /// Whether it is the event stream of cc-ci-run.
    pub fn is_events(&self) -> bool {
        self.req.ccci() && self.req.route() == "/events"
    }
}

type Hook = dyn Fn(&Request) -> Action + Send + Sync;

struct Shared {
    stop: AtomicBool,
    engine: PathBuf,
    hook: Box<Hook>,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    /// Each call's client connection, to close it from outside.
    clients: Vec<Option<UnixStream>>,
    threads: Vec<JoinHandle<()>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, n: usize, f: impl FnOnce(&mut Call)) {
        let mut st = self.lock();
        f(&mut st.calls[n]);
        drop(st);
        self.changed.notify_all();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn killed(&self, n: usize) -> bool {
        self.lock().calls[n]
            .ended
            .is_some_and(|(_, e)| e == End::Killed)
    }

    /// Why the connection of call `n` must end now, if it must.
    fn interrupted(&self, n: usize) -> Option<End> {
        if self.stopped() {
            Some(End::Stopped)
        } else if self.killed(n) {
            Some(End::Killed)
        } else {
            None
        }
    }

    /// Records the end of call `n` (the first reason counts).
    fn end(&self, n: usize, how: End) {
        self.update(n, |c| {
            if c.ended.is_none() {
                c.ended = Some((SystemTime::now(), how));
            }
        });
    }
}

/// An engine proxy on a socket of its own (see the module's text).
pub struct Proxy {
    socket: PathBuf,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy on `dir/NAME.sock` in front of [`real_engine`]; `hook`
    /// decides each request's [`Action`].
    pub fn start(
        dir: &Path,
        name: &str,
        hook: impl Fn(&Request) -> Action + Send + Sync + 'static,
    ) -> Proxy {
        let socket = dir.join(format!("{name}.sock"));
        let listener = UnixListener::bind(&socket)
            .unwrap_or_else(|e| panic!("bind the proxy socket {}: {e}", socket.display()));
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            engine: real_engine(),
            hook: Box::new(hook),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let s = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name(format!("proxy-{name}"))
            .spawn(move || accept_loop(&listener, &s))
            .unwrap();
        Proxy {
            socket,
            shared,
            accept: Some(accept),
        }
    }

    /// A proxy that passes everything on (and records it).
    pub fn passthrough(dir: &Path, name: &str) -> Proxy {
        Proxy::start(dir, name, |_| Action::pass())
    }

    /// `DOCKER_HOST` for it.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Every request so far, in the order their heads were read.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// Waits until `found` finds something in the calls (looked at again
    /// on every change), or panics after `within` naming `what` and every
    /// call seen.
    pub fn wait_for<T>(
        &self,
        what: &str,
        within: Duration,
        mut found: impl FnMut(&[Call]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        let mut st = self.shared.lock();
        loop {
            if let Some(t) = found(&st.calls) {
                return t;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let seen = summary(&st.calls);
                drop(st);
                panic!("timed out waiting for {what}; the proxy saw:\n{seen}");
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Closes call `n`'s connection both ways (to the client and to the
    /// engine), as a stream that dies does.
    pub fn kill(&self, n: usize) {
        let client = {
            let mut st = self.shared.lock();
            let c = &mut st.calls[n];
            if c.ended.is_none() {
                c.ended = Some((SystemTime::now(), End::Killed));
            }
            st.clients[n].take()
        };
        self.shared.changed.notify_all();
        if let Some(c) = client {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// One line per call, for messages.
pub fn summary(calls: &[Call]) -> String {
    calls
        .iter()
        .map(|c| {
            format!(
                "  #{} {} {} (pid {}, {}): {:?} status {:?} ended {:?}",
                c.n,
                c.req.method,
                c.req.path,
                c.req.pid,
                c.req.agent,
                c.fate,
                c.status,
                c.ended.map(|(_, e)| e)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the stop.
        let _ = UnixStream::connect(&self.socket);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let (threads, clients) = {
            let mut st = self.shared.lock();
            (
                std::mem::take(&mut st.threads),
                std::mem::take(&mut st.clients),
            )
        };
        for c in clients.into_iter().flatten() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        for t in threads {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn accept_loop(listener: &UnixListener, shared: &Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stopped() {
            break;
        }
        let Ok(conn) = conn else {
            std::thread::sleep(Duration::from_millis(u64::from(TICK)));
            continue;
        };
        let s = Arc::clone(shared);
        let t = std::thread::Builder::new()
            .name("proxy-conn".into())
            .spawn(move || serve(&s, conn));
        if let Ok(t) = t {
            let mut st = shared.lock();
            st.threads.retain(|t| !t.is_finished());
            st.threads.push(t);
        }
    }
}

/// The pid of the process at the other end of `s`.
fn peer_pid(s: &UnixStream) -> i32 {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which we
    // own; the descriptor is open for the call's duration.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc == 0 {
        cred.pid
    } else {
        0
    }
}

/// What one read gave.
enum Got {
    Data(Vec<u8>),
    Nothing,
    End,
}

fn read_now(s: &UnixStream) -> Got {
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        match (&*s).read(&mut chunk) {
            Ok(0) => return Got::End,
            Ok(n) => {
                chunk.truncate(n);
                return Got::Data(chunk);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Got::Nothing,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Got::End,
        }
    }
}

/// Waits one tick for any of `socks` to be ready for `flags`.
fn ready(socks: &[&UnixStream], flags: PollFlags) -> Vec<bool> {
    let mut fds: Vec<PollFd> = socks
        .iter()
        .map(|s| PollFd::new(s.as_fd(), flags))
        .collect();
    match poll(&mut fds, PollTimeout::from(TICK)) {
        Ok(_) => fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect(),
        Err(_) => vec![false; socks.len()],
    }
}

/// Writes all of `data`, ticking while the peer does not read; false when
/// the peer is gone or the connection must end.
fn write_all(shared: &Shared, n: Option<usize>, s: &UnixStream, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        match (&*s).write(data) {
            Ok(0) => return false,
            Ok(k) => data = &data[k..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if shared.stopped() || n.is_some_and(|n| shared.killed(n)) {
                    return false;
                }
                ready(&[s], PollFlags::POLLOUT);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Percent-decoding (`+` stays).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| char::from(c).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The request of a head: (method, path without the version, agent).
fn parse_request(head: &[u8], pid: i32) -> Option<Request> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let raw = first.next()?;
    // `/v1.41/info` → `/info`.
    let path = raw
        .strip_prefix("/v")
        .and_then(|rest| {
            let (v, tail) = rest.split_once('/')?;
            v.split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| format!("/{tail}"))
        })
        .unwrap_or_else(|| raw.to_string());
    let agent = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("user-agent"))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    Some(Request {
        method,
        path,
        pid,
        agent,
    })
}

/// The status and whether the body is chunked, of an answer head.
fn parse_answer(head: &[u8]) -> (u16, bool) {
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = text.lines().any(|l| {
        l.split_once(':')
            .is_some_and(|(k, v)| k.trim() == "transfer-encoding" && v.contains("chunked"))
    });
    (status, chunked)
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        404 => "Not Found",
        409 => "Conflict",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// One connection: its first request, through the hook, then both ways.
fn serve(shared: &Shared, client: UnixStream) {
    let pid = peer_pid(&client);
    if client.set_nonblocking(true).is_err() {
        return;
    }
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > MAX_HEAD || shared.stopped() {
            return;
        }
        match read_now(&client) {
            Got::Data(d) => buf.extend_from_slice(&d),
            Got::Nothing => {
                ready(&[&client], PollFlags::POLLIN);
            }
            Got::End => return,
        }
    };
    let Some(req) = parse_request(&buf[..head_end], pid) else {
        return;
    };
    let action = (shared.hook)(&req);
    let n = {
        let mut st = shared.lock();
        let n = st.calls.len();
        st.calls.push(Call {
            n,
            req: req.clone(),
            at: SystemTime::now(),
            fate: Fate::Forwarded,
            held_for: None,
            sent: None,
            live: None,
            status: None,
            answer_held: false,
            on_answer_ran: false,
            ended: None,
            error: None,
            body: Vec::new(),
            chunked: false,
        });
        st.clients.push(client.try_clone().ok());
        n
    };
    shared.changed.notify_all();
    let how = exchange(shared, n, &req, action, &client, buf);
    shared.end(n, how);
    let _ = client.shutdown(std::net::Shutdown::Both);
    if let Some(c) = shared.lock().clients.get_mut(n) {
        c.take();
    }
}

/// Holds call `n` until `go` says so, reading what more the client sends
/// into `buf`: None when it may go on, else how the connection ended.
fn hold(
    shared: &Shared,
    n: usize,
    client: &UnixStream,
    buf: &mut Vec<u8>,
    go: impl Fn() -> bool,
) -> Option<End> {
    while !go() {
        if let Some(e) = shared.interrupted(n) {
            return Some(e);
        }
        if ready(&[client], PollFlags::POLLIN)[0] {
            match read_now(client) {
                Got::Data(d) => buf.extend_from_slice(&d),
                Got::Nothing => {}
                Got::End => return Some(End::Client),
            }
        }
    }
    None
}

fn exchange(
    shared: &Shared,
    n: usize,
    req: &Request,
    action: Action,
    client: &UnixStream,
    mut buf: Vec<u8>,
) -> End {
    let Action {
        upstream,
        before,
        early_head,
        reply,
        hold_answer,
        mut on_answer,
    } = action;
    if early_head && !write_all(shared, Some(n), client, EARLY_HEAD) {
        return End::Client;
    }
    let start = Instant::now();
    let held = match &before {
        Before::Now => None,
        Before::Delay(d) => {
            shared.update(n, |c| c.fate = Fate::Held);
            Some(hold(shared, n, client, &mut buf, || start.elapsed() >= *d))
        }
        Before::Until(g) => {
            shared.update(n, |c| c.fate = Fate::Held);
            Some(hold(shared, n, client, &mut buf, || g.is_open()))
        }
    };
    match held {
        Some(Some(how)) => {
            shared.update(n, |c| c.fate = Fate::Abandoned);
            return how;
        }
        Some(None) => shared.update(n, |c| c.held_for = Some(start.elapsed())),
        None => {}
    }
    match reply {
        Reply::Forward => {}
        Reply::Hang => {
            shared.update(n, |c| c.fate = Fate::Hung);
            let mut ignored = Vec::new();
            return hold(shared, n, client, &mut ignored, || false).unwrap_or(End::Client);
        }
        Reply::Error(status, message) => {
            let body = serde_json::json!({ "message": message }).to_string();
            let answer = format!(
                "HTTP/1.1 {status} {}\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                reason(status),
                body.len()
            );
            shared.update(n, |c| c.fate = Fate::Refused(status));
            write_all(shared, Some(n), client, answer.as_bytes());
            return End::Engine;
        }
    }
    let engine = upstream.unwrap_or_else(|| shared.engine.clone());
    let up = match UnixStream::connect(&engine) {
        Ok(up) if up.set_nonblocking(true).is_ok() => up,
        _ => {
            shared.update(n, |c| c.fate = Fate::Unreachable);
            return End::Engine;
        }
    };
    shared.update(n, |c| {
        c.fate = Fate::Forwarded;
        c.sent = Some(SystemTime::now());
    });
    let end = pipe(
        shared,
        n,
        req,
        client,
        &up,
        &buf,
        early_head,
        hold_answer,
        &mut on_answer,
    );
    let _ = up.shutdown(std::net::Shutdown::Both);
    end
}

/// Both ways until either side ends: the engine's answer head is looked at
/// (recorded, acted on, held back) before any of it goes to the client.
#[allow(clippy::too_many_arguments)]
fn pipe(
    shared: &Shared,
    n: usize,
    req: &Request,
    client: &UnixStream,
    up: &UnixStream,
    sent: &[u8],
    early_head: bool,
    hold_answer: Duration,
    on_answer: &mut Option<OnAnswer>,
) -> End {
    if !write_all(shared, Some(n), up, sent) {
        return End::Engine;
    }
    let tee = req.route() == "/events";
    let mut head: Option<Vec<u8>> = Some(Vec::new());
    loop {
        if let Some(e) = shared.interrupted(n) {
            return e;
        }
        let r = ready(&[client, up], PollFlags::POLLIN);
        if r[0] {
            match read_now(client) {
                Got::Data(d) => {
                    if !write_all(shared, Some(n), up, &d) {
                        return End::Engine;
                    }
                }
                Got::Nothing => {}
                Got::End => return End::Client,
            }
        }
        if !r[1] {
            continue;
        }
        let data = match read_now(up) {
            Got::Data(d) => d,
            Got::Nothing => continue,
            Got::End => {
                if let Some(partial) = head.take() {
                    write_all(shared, Some(n), client, &partial);
                }
                return End::Engine;
            }
        };
        // What goes to the client, and how much of its end is body.
        let (out, body_len) = match head.as_mut() {
            None => {
                let len = data.len();
                (data, len)
            }
            Some(h) => {
                h.extend_from_slice(&data);
                let Some(p) = find(h, b"\r\n\r\n") else {
                    if h.len() > MAX_HEAD {
                        return End::Broken;
                    }
                    continue;
                };
                let mut whole = head.take().unwrap_or_default();
                let body = whole.split_off(p + 4);
                let (status, chunked) = parse_answer(&whole);
                shared.update(n, |c| {
                    c.live = Some(SystemTime::now());
                    c.status = Some(status);
                    c.chunked = chunked;
                });
                if let Some(f) = on_answer.take() {
                    f(req, status);
                    shared.update(n, |c| c.on_answer_ran = true);
                }
                if !hold_answer.is_zero() {
                    shared.update(n, |c| c.answer_held = true);
                    let until = Instant::now() + hold_answer;
                    while Instant::now() < until {
                        if let Some(e) = shared.interrupted(n) {
                            return e;
                        }
                        std::thread::sleep(Duration::from_millis(u64::from(TICK)));
                    }
                }
                let len = body.len();
                if early_head {
                    if status != 200 || !chunked {
                        shared.update(n, |c| {
                            c.error = Some(format!(
                                "the engine answered {status} (chunked: {chunked}) after the proxy's early head"
                            ))
                        });
                        return End::Broken;
                    }
                    (body, len)
                } else {
                    whole.extend_from_slice(&body);
                    (whole, len)
                }
            }
        };
        if tee && body_len > 0 {
            let part = out[out.len() - body_len..].to_vec();
            shared.update(n, |c| c.body.extend_from_slice(&part));
        }
        if !write_all(shared, Some(n), client, &out) {
            return End::Client;
        }
    }
}
