//! The Engine API on the engine's socket: the transport of the one engine
//! client ([`super::Docker`]). HTTP/1.1 over a unix socket (or plain TCP),
//! one connection per request (`Connection: close`), the same bound and
//! cancellation rule for every call: the caller's deadline, and the
//! funnel's latch, which ends a call at once (the socket and the latch are
//! polled together; nothing blocks without a deadline).
//!
//! Where the engine is: `DOCKER_HOST` as docker's own client reads it
//! (`unix:///path`, `tcp://host:port`; unset or empty is
//! `unix:///var/run/docker.sock`). TLS (`DOCKER_TLS_VERIFY`) and `ssh://`
//! are not spoken: such a host is a clear error, never a silent fallback.
//!
//! The API version is negotiated once per client, as docker's own client
//! does: the engine's `/_ping` says its version, and every call names the
//! lower of it and [`MAX_VERSION`] (an engine older than that is asked in
//! its own version; a newer one in ours, which it still serves).

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags};

use crate::ext::{Bound, Interrupted};
use crate::sys::latch;

/// The newest API version cc-ci-run asks in (every field it reads is in
/// 1.41, engine 20.10, and unchanged since).
pub(crate) const MAX_VERSION: (u32, u32) = (1, 47);

/// The default socket when `DOCKER_HOST` is unset.
pub(crate) const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The largest answer read whole (a stack's tasks with their specs are
/// kilobytes; this only stops a runaway peer).
const MAX_BODY: usize = 256 << 20;

/// The largest response head.
const MAX_HEAD: usize = 64 << 10;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Addr {
    Unix(PathBuf),
    Tcp(String),
}

/// A client of one engine. Cheap to clone: clones share the negotiated
/// version.
#[derive(Clone, Debug)]
pub struct Engine {
    addr: Addr,
    version: Arc<OnceLock<String>>,
}

/// An answer read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON of type `T`; `what` names the call in errors.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "unexpected answer of the engine to {what}: {}",
                String::from_utf8_lossy(&self.body[..self.body.len().min(200)])
            )
        })
    }

    /// The engine's error message (`{"message": ...}`), else the body.
    pub fn message(&self) -> String {
        #[derive(serde::Deserialize)]
        struct Msg {
            message: String,
        }
        match serde_json::from_slice::<Msg>(&self.body) {
            Ok(m) => m.message,
            Err(_) => String::from_utf8_lossy(&self.body).trim().to_string(),
        }
    }

    /// Ok when the status is 2xx, else an error naming `what`, the status
    /// and the engine's message.
    pub(crate) fn check(self, what: &str) -> Result<Reply> {
        if self.ok() {
            return Ok(self);
        }
        bail!("{what} failed ({}): {}", self.status, self.message())
    }
}

impl Engine {
    /// The engine `DOCKER_HOST` names (None or empty: the default socket).
    pub fn from_host(host: Option<&str>) -> Result<Engine> {
        let addr = match host.map(str::trim).filter(|h| !h.is_empty()) {
            None => Addr::Unix(PathBuf::from(DEFAULT_SOCKET)),
            Some(h) => {
                if let Some(p) = h.strip_prefix("unix://") {
                    if p.is_empty() {
                        bail!("DOCKER_HOST: {h:?} names no socket path (unix:///path)");
                    }
                    Addr::Unix(PathBuf::from(p))
                } else if let Some(rest) = h.strip_prefix("tcp://") {
                    let hostport = rest.trim_end_matches('/');
                    if hostport.is_empty() || hostport.contains('/') {
                        bail!("DOCKER_HOST: {h:?} is not tcp://HOST:PORT");
                    }
                    let hostport = if hostport.rsplit_once(':').is_some_and(|(_, p)| {
                        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())
                    }) {
                        hostport.to_string()
                    } else {
                        format!("{hostport}:2375")
                    };
                    Addr::Tcp(hostport)
                } else {
                    bail!(
                        "DOCKER_HOST: {h:?} is not spoken by cc-ci-run (unix:///path or tcp://HOST:PORT; no TLS, no ssh://)"
                    );
                }
            }
        };
        Ok(Engine {
            addr,
            version: Arc::new(OnceLock::new()),
        })
    }

    /// Whether there is something to connect to: a unix socket's file
    /// exists (TCP: always assumed).
    pub(crate) fn present(&self) -> bool {
        match &self.addr {
            Addr::Unix(p) => p.exists(),
            Addr::Tcp(_) => true,
        }
    }

    /// Where the engine is, as DOCKER_HOST spells it.
    pub fn host(&self) -> String {
        match &self.addr {
            Addr::Unix(p) => format!("unix://{}", p.display()),
            Addr::Tcp(h) => format!("tcp://{h}"),
        }
    }

    /// One call for a caller outside the crate's bounds (the tests, a
    /// tool): `deadline` and `cancel` are what a [`Bound`] holds.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        deadline: Option<Instant>,
        cancel: Option<&crate::sys::latch::Latch>,
    ) -> Result<Reply> {
        let bound = Bound {
            cancel,
            deadline,
            grace: Duration::ZERO,
        };
        self.send(method, path, body, &bound)
    }

    /// `GET path` (a path of the API, without the version: `/services?…`).
    pub(crate) fn get(&self, path: &str, bound: &Bound) -> Result<Reply> {
        self.send("GET", path, None, bound)
    }

    /// A call of the API: `method path` with an optional JSON body, read
    /// whole, within `bound`.
    pub(crate) fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        bound: &Bound,
    ) -> Result<Reply> {
        let what = call_name(method, path);
        let full = self.versioned(path, bound)?;
        self.raw(method, &full, body, bound)
            .map(|r| r.reply)
            .with_context(|| format!("engine call {what} ({})", self.host()))
    }

    /// Opens `method path` as a stream (events, a pull's progress): the
    /// head is read within `bound`, the body then as it comes.
    pub(crate) fn open(&self, method: &str, path: &str, bound: &Bound) -> Result<BodyStream> {
        let what = call_name(method, path);
        let full = self.versioned(path, bound)?;
        self.open_raw(method, &full, None, bound)
            .with_context(|| format!("engine call {what} ({})", self.host()))
    }

    fn versioned(&self, path: &str, bound: &Bound) -> Result<String> {
        if let Some(v) = self.version.get() {
            return Ok(format!("/v{v}{path}"));
        }
        let ping = self
            .raw("GET", "/_ping", None, bound)
            .with_context(|| format!("cannot reach the Docker engine at {}", self.host()))?;
        if !ping.reply.ok() {
            bail!(
                "the Docker engine at {} answered its ping with {}: {}",
                self.host(),
                ping.reply.status,
                ping.reply.message()
            );
        }
        let v = negotiate(ping.api_version.as_deref());
        let v = self.version.get_or_init(|| v).clone();
        Ok(format!("/v{v}{path}"))
    }

    fn raw(&self, method: &str, path: &str, body: Option<&[u8]>, bound: &Bound) -> Result<Raw> {
        let mut s = self.open_raw(method, path, body, bound)?;
        let mut out = Vec::new();
        loop {
            match s.read_some(&mut out, bound)? {
                0 if s.finished() => break,
                _ if out.len() > MAX_BODY => bail!("the answer is over {MAX_BODY} bytes"),
                _ => {}
            }
        }
        Ok(Raw {
            reply: Reply {
                status: s.status,
                body: out,
            },
            api_version: s.api_version.take(),
        })
    }

    fn open_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        bound: &Bound,
    ) -> Result<BodyStream> {
        let mut conn = self.connect(bound)?;
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: cc-ci-run\r\nConnection: close\r\n");
        match body {
            Some(b) => req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                b.len()
            )),
            None if method == "POST" => req.push_str("Content-Length: 0\r\n\r\n"),
            None => req.push_str("\r\n"),
        }
        let mut bytes = req.into_bytes();
        if let Some(b) = body {
            bytes.extend_from_slice(b);
        }
        conn.write_all(&bytes, bound)?;
        BodyStream::read_head(conn, method == "HEAD", bound)
    }

    fn connect(&self, bound: &Bound) -> Result<Conn> {
        if bound.cancel.is_some_and(|l| l.is_set()) {
            return Err(anyhow::Error::new(Interrupted).context("engine call was stopped"));
        }
        let sock = match &self.addr {
            Addr::Unix(p) => Sock::Unix(UnixStream::connect(p).with_context(|| {
                format!(
                    "cannot connect to the Docker engine's socket {}",
                    p.display()
                )
            })?),
            Addr::Tcp(h) => {
                use std::net::ToSocketAddrs;
                let left = bound
                    .deadline
                    .map_or(Duration::from_secs(30), |d| {
                        d.saturating_duration_since(Instant::now())
                    })
                    .max(Duration::from_millis(1));
                let addr = h
                    .to_socket_addrs()
                    .with_context(|| format!("cannot resolve the Docker engine's host {h}"))?
                    .next()
                    .ok_or_else(|| anyhow!("the Docker engine's host {h} has no address"))?;
                Sock::Tcp(
                    std::net::TcpStream::connect_timeout(&addr, left)
                        .with_context(|| format!("cannot connect to the Docker engine at {h}"))?,
                )
            }
        };
        sock.set_nonblocking()?;
        Ok(Conn { sock })
    }
}

struct Raw {
    reply: Reply,
    api_version: Option<String>,
}

/// A call as errors name it: `METHOD PATH`, the query left out.
pub(crate) fn call_name(method: &str, path: &str) -> String {
    format!("{method} {}", path.split('?').next().unwrap_or(path))
}

/// The version to ask in, from the engine's `Api-Version` (None: the
/// engine did not say; 1.24 is what docker's client then assumes).
pub fn negotiate(engine: Option<&str>) -> String {
    let parse = |v: &str| -> Option<(u32, u32)> {
        let (a, b) = v.trim().split_once('.')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    let theirs = engine.and_then(parse).unwrap_or((1, 24));
    let v = theirs.min(MAX_VERSION);
    format!("{}.{}", v.0, v.1)
}

/// `filters=` of a list call: each key with its values, as the engine
/// reads them (a JSON map of lists), percent-encoded.
pub fn filters(pairs: &[(&str, &str)]) -> String {
    let mut map: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (k, v) in pairs {
        map.entry(k).or_default().push(v);
    }
    let json = serde_json::to_string(&map).unwrap_or_else(|_| "{}".to_string());
    format!("filters={}", encode(&json))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

enum Sock {
    Unix(UnixStream),
    Tcp(std::net::TcpStream),
}

impl Sock {
    fn set_nonblocking(&self) -> Result<()> {
        match self {
            Sock::Unix(s) => s.set_nonblocking(true),
            Sock::Tcp(s) => s.set_nonblocking(true),
        }
        .context("failed to make the engine's socket non-blocking")
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Sock::Unix(s) => s.as_fd(),
            Sock::Tcp(s) => s.as_fd(),
        }
    }
}

struct Conn {
    sock: Sock,
}

impl Conn {
    /// Waits until the socket is ready for `flags`, the latch, or the
    /// deadline.
    fn ready(&self, flags: PollFlags, bound: &Bound) -> Result<()> {
        loop {
            if bound.cancel.is_some_and(|l| l.is_set()) {
                return Err(anyhow::Error::new(Interrupted).context("engine call was stopped"));
            }
            if bound.expired() {
                bail!("the engine did not answer within the call's bound");
            }
            let mut fds = vec![PollFd::new(self.sock.fd(), flags)];
            if let Some(l) = bound.cancel {
                fds.push(PollFd::new(l.fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, latch::timeout_until(bound.deadline)) {
                Ok(_) => {
                    let r = fds[0].revents().unwrap_or(PollFlags::empty());
                    if !r.is_empty() {
                        return Ok(());
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => bail!("poll on the engine's socket failed: {e}"),
            }
        }
    }

    fn write_all(&mut self, mut data: &[u8], bound: &Bound) -> Result<()> {
        while !data.is_empty() {
            let r = match &mut self.sock {
                Sock::Unix(s) => s.write(data),
                Sock::Tcp(s) => s.write(data),
            };
            match r {
                Ok(0) => bail!("the engine closed the connection"),
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.ready(PollFlags::POLLOUT, bound)?
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("failed to send to the engine"),
            }
        }
        Ok(())
    }

    /// Reads what is there without waiting: Ok(None) when nothing is.
    fn read_now(&mut self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        loop {
            let r = match &mut self.sock {
                Sock::Unix(s) => s.read(buf),
                Sock::Tcp(s) => s.read(buf),
            };
            match r {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads at least one byte (0 at the end), within `bound`.
    fn read_wait(&mut self, buf: &mut [u8], bound: &Bound) -> Result<usize> {
        loop {
            if let Some(n) = self
                .read_now(buf)
                .context("failed to read the engine's answer")?
            {
                return Ok(n);
            }
            self.ready(PollFlags::POLLIN, bound)?;
        }
    }
}

/// How the body is framed.
enum Framing {
    Length(usize),
    Chunked(Dechunk),
    ToEof,
    Empty,
}

/// An answer whose body is read as it comes.
pub(crate) struct BodyStream {
    conn: Conn,
    pub status: u16,
    api_version: Option<String>,
    framing: Framing,
    /// Bytes read from the socket and not yet decoded.
    raw: Vec<u8>,
    /// The socket reached its end.
    eof: bool,
}

impl BodyStream {
    fn read_head(mut conn: Conn, head_only: bool, bound: &Bound) -> Result<BodyStream> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let end = loop {
            if let Some(p) = find(&buf, b"\r\n\r\n") {
                break p;
            }
            if buf.len() > MAX_HEAD {
                bail!("the engine's answer has a head over {MAX_HEAD} bytes");
            }
            let n = conn.read_wait(&mut chunk, bound)?;
            if n == 0 {
                bail!("the engine closed the connection before answering");
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let rest = buf[end + 4..].to_vec();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let proto = parts.next().unwrap_or_default();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .filter(|_| proto.starts_with("HTTP/1."))
            .ok_or_else(|| anyhow!("the engine answered no HTTP/1.x status: {status_line:?}"))?;
        let mut length = None;
        let mut chunked = false;
        let mut api_version = None;
        for l in lines {
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "content-length" => {
                    length =
                        Some(v.parse::<usize>().with_context(|| {
                            format!("the engine sent a bad Content-Length {v:?}")
                        })?)
                }
                "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                "api-version" => api_version = Some(v.to_string()),
                _ => {}
            }
        }
        let framing = if head_only || status == 204 || status == 304 || (100..200).contains(&status)
        {
            Framing::Empty
        } else if chunked {
            Framing::Chunked(Dechunk::default())
        } else if let Some(n) = length {
            if n > MAX_BODY {
                bail!("the engine's answer is over {MAX_BODY} bytes");
            }
            Framing::Length(n)
        } else {
            Framing::ToEof
        };
        Ok(BodyStream {
            conn,
            status,
            api_version,
            framing,
            raw: rest,
            eof: false,
        })
    }

    /// Whether the whole body was read.
    pub(crate) fn finished(&self) -> bool {
        match &self.framing {
            Framing::Empty => true,
            Framing::Length(n) => *n == 0,
            Framing::Chunked(d) => d.done(),
            Framing::ToEof => self.eof && self.raw.is_empty(),
        }
    }

    /// The socket, to poll for more.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.conn.sock.fd()
    }

    /// Moves what has been read into `out` (decoded), reading what the
    /// socket holds without waiting. Ok(true) when the body has ended.
    pub(crate) fn read_available(&mut self, out: &mut Vec<u8>) -> Result<bool> {
        let mut chunk = [0u8; 8192];
        loop {
            self.decode(out)?;
            if self.finished() {
                return Ok(true);
            }
            if self.eof {
                bail!("the engine closed the connection in the middle of its answer");
            }
            match self
                .conn
                .read_now(&mut chunk)
                .context("failed to read the engine's answer")?
            {
                None => return Ok(false),
                Some(0) => self.eof = true,
                Some(n) => self.raw.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads into `out` until at least one more byte of the body came or
    /// it ended: how many bytes came (0 at the end).
    fn read_some(&mut self, out: &mut Vec<u8>, bound: &Bound) -> Result<usize> {
        loop {
            let before = out.len();
            let ended = self.read_available(out)?;
            if out.len() > before || ended {
                return Ok(out.len() - before);
            }
            self.conn.ready(PollFlags::POLLIN, bound)?;
        }
    }

    fn decode(&mut self, out: &mut Vec<u8>) -> Result<()> {
        match &mut self.framing {
            Framing::Empty => self.raw.clear(),
            Framing::Length(n) => {
                let take = (*n).min(self.raw.len());
                out.extend(self.raw.drain(..take));
                *n -= take;
                self.raw.clear();
            }
            Framing::Chunked(d) => {
                let raw = std::mem::take(&mut self.raw);
                d.feed(&raw, out)?;
            }
            Framing::ToEof => out.append(&mut self.raw),
        }
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// An incremental decoder of HTTP/1.1 chunked transfer coding.
#[derive(Debug, Default)]
pub struct Dechunk {
    state: ChunkState,
    /// The part of a size, CRLF or trailer line read so far.
    partial: Vec<u8>,
}

#[derive(Debug, Default)]
enum ChunkState {
    /// Reading a size line.
    #[default]
    Size,
    /// `n` bytes of data left.
    Data(usize),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, until an empty one.
    Trailer,
    Done,
}

impl Dechunk {
    pub fn done(&self) -> bool {
        matches!(self.state, ChunkState::Done)
    }

    /// Decodes `input` (whatever arrived) into `out`. Bytes that end in
    /// the middle of a size line are kept for the next call.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let mut line = std::mem::take(&mut self.partial);
        let mut i = 0;
        while i < input.len() {
            match &mut self.state {
                ChunkState::Done => break,
                ChunkState::Data(n) => {
                    let take = (*n).min(input.len() - i);
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    *n -= take;
                    if *n == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                }
                ChunkState::Size | ChunkState::DataEnd | ChunkState::Trailer => {
                    let b = input[i];
                    i += 1;
                    if b != b'\n' {
                        if line.len() > 4096 {
                            bail!("a chunk-size line of the engine's answer is too long");
                        }
                        line.push(b);
                        continue;
                    }
                    let text = String::from_utf8_lossy(&line).trim().to_string();
                    line.clear();
                    match self.state {
                        ChunkState::DataEnd => {
                            if !text.is_empty() {
                                bail!("a chunk of the engine's answer is longer than it said");
                            }
                            self.state = ChunkState::Size;
                        }
                        ChunkState::Trailer => {
                            if text.is_empty() {
                                self.state = ChunkState::Done;
                            }
                        }
                        _ => {
                            let hex = text.split(';').next().unwrap_or_default().trim();
                            let n = usize::from_str_radix(hex, 16).map_err(|_| {
                                anyhow!("the engine sent a bad chunk size {text:?}")
                            })?;
                            self.state = if n == 0 {
                                ChunkState::Trailer
                            } else {
                                ChunkState::Data(n)
                            };
                        }
                    }
                }
            }
        }
        self.partial = line;
        Ok(())
    }
}
