//! The engine as the lock sees it: the engine client ([`Swarm`]), the
//! engine's clock and the host's skew against it, the forms of "not
//! found", and the boot clock a holder measures its lease with.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use super::lease::{now_ms, parse_inspect, unix_ms, LeaseInfo, LockObject, LOCK_LABEL};
use crate::exit::Failure;
use crate::ext::docker::api::Reply;
use crate::ext::docker::Docker;
use crate::ext::{self, Bound};
use crate::lock::backend::{Backend, Lease, LockSettings};
use crate::say;

/// What a failed engine call's message says about the object it named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The name is taken (`AlreadyExists`): a create that lost its race.
    Exists,
    /// The object is not there, in any of the forms the CLI, the API and
    /// swarmkit say so: a lost race (someone removed or took it over).
    NotFound,
    /// Anything else: the engine cannot be used as it should.
    Other,
}

/// Classifies a failed engine call by its message (pure). Not-found comes
/// in several forms: the CLI's "Error: No such config: X" and "Error
/// response from daemon: config X not found", swarmkit's "rpc error: code
/// = NotFound desc = could not find config X", the API's 404 status.
pub fn classify_refusal(message: &str) -> Refusal {
    let m = message.to_ascii_lowercase();
    if m.contains("alreadyexists") || m.contains("already exists") {
        return Refusal::Exists;
    }
    let not_found = [
        "not found",
        "notfound",
        "could not find",
        "no such config",
        "no such object",
        "status code 404",
        "status 404",
        "404 not found",
    ];
    if not_found.iter().any(|n| m.contains(n)) {
        return Refusal::NotFound;
    }
    Refusal::Other
}

/// How an engine call about one object ended.
#[derive(Debug)]
enum Answer {
    Ok(Vec<u8>),
    Exists,
    NotFound,
}

/// How long one engine call may take when no lease says otherwise
/// (`locks`, `unlock`, the janitor's tidying).
const CALL_BOUND: Duration = Duration::from_secs(30);

/// The engine's current time as an answer gave it, with the host's wall
/// clock just before the call and just after its answer.
#[derive(Clone, Copy, Debug)]
pub struct EngineTime {
    pub engine_ms: u64,
    pub sent_ms: u64,
    pub answered_ms: u64,
}

impl EngineTime {
    /// How far the host's clock is off the engine's, at least (0 when the
    /// engine's time falls between send and answer): positive when the
    /// host is ahead.
    pub fn skew_ms(&self) -> i64 {
        skew_ms(self.engine_ms, self.sent_ms, self.answered_ms)
    }
}

/// The least skew that explains the engine stamping `engine_ms` on a call
/// the host sent at `sent_ms` and heard answered at `answered_ms`
/// (positive: the host is ahead; pure).
pub fn skew_ms(engine_ms: u64, sent_ms: u64, answered_ms: u64) -> i64 {
    if engine_ms < sent_ms {
        (sent_ms - engine_ms) as i64
    } else if engine_ms > answered_ms {
        -((engine_ms - answered_ms) as i64)
    } else {
        0
    }
}

/// What a measured skew means for a host using `margin` (pure): None when
/// within half the margin; a warning past it; an error (the run refuses
/// the swarm backend) past the whole margin.
pub fn judge_skew(skew_ms: i64, margin: Duration) -> Option<(bool, String)> {
    let m = margin.as_millis() as i64;
    let off = skew_ms.unsigned_abs() as i64;
    if off * 2 <= m {
        return None;
    }
    let dir = if skew_ms > 0 { "ahead of" } else { "behind" };
    let text = format!(
        "this host's clock is {}.{:03}s {dir} the swarm engine's (the take-over margin CCCI_LOCK_MARGIN is {}); synchronise the clocks (NTP)",
        off / 1000,
        off % 1000,
        crate::units::human(margin)
    );
    Some((off > m, text))
}

/// Talks to the swarm's lock objects through the engine client.
#[derive(Clone, Debug)]
pub struct Swarm {
    pub(super) docker: Docker,
    bound: Duration,
}

impl Swarm {
    /// The engine `DOCKER_HOST` (`host`) names.
    pub fn new(host: Option<&str>) -> Swarm {
        Swarm {
            docker: Docker::new(host),
            bound: CALL_BOUND,
        }
    }

    /// The same client, each call bounded by `bound`.
    pub fn bounded(mut self, bound: Duration) -> Swarm {
        self.bound = bound;
        self
    }

    /// One engine call, bounded; an engine that cannot be reached, or
    /// that outlasts the bound, cannot be used (exit 3). A call cut off at
    /// its bound after the engine committed it (a create) leaves an object
    /// whose token says it is ours: the caller looks.
    fn send(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Reply> {
        let bound = Bound::until(Instant::now() + self.bound, Duration::ZERO);
        self.docker
            .engine()
            .and_then(|e| e.send(method, path, body, &bound))
            .map_err(|e| unreachable_engine(&e))
    }

    fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Answer> {
        let r = self.send(method, path, body)?;
        if r.ok() {
            return Ok(Answer::Ok(r.body));
        }
        let msg = r.message();
        match (r.status, classify_refusal(&msg)) {
            (409, _) | (_, Refusal::Exists) => Ok(Answer::Exists),
            (404, _) | (_, Refusal::NotFound) => Ok(Answer::NotFound),
            _ => Err(unreachable_engine(&anyhow!(
                "{} failed ({}): {msg}",
                ext::docker::api::call_name(method, path),
                r.status
            ))),
        }
    }

    /// The engine's current time (`GET /info`'s `SystemTime`).
    pub fn engine_now(&self) -> Result<EngineTime> {
        #[derive(serde::Deserialize)]
        struct Info {
            #[serde(rename = "SystemTime", default)]
            system_time: String,
        }
        let sent_ms = now_ms();
        let body = match self.call("GET", "/info", None)? {
            Answer::Ok(b) => b,
            _ => return Err(unreachable_engine(&anyhow!("GET /info gave no time"))),
        };
        let answered_ms = now_ms();
        let info: Info = serde_json::from_slice(&body)
            .context("failed to parse the engine's time from GET /info")?;
        let engine = crate::log::parse_timestamp(&info.system_time).ok_or_else(|| {
            unreachable_engine(&anyhow!(
                "the engine's time {:?} is not an RFC 3339 UTC time",
                info.system_time
            ))
        })?;
        Ok(EngineTime {
            engine_ms: unix_ms(engine),
            sent_ms,
            answered_ms,
        })
    }

    /// Whether the lease of `obj` is dead by the engine's clock (what a
    /// take-over needs; `unlock` and the janitor ask the same): the
    /// engine's time first, then the object read again by its ID, so a
    /// renewal that lands in between is seen. False when it is gone.
    pub fn dead(&self, obj: &LockObject, own: &Lease) -> Result<bool> {
        let now = self.engine_now()?;
        let Some(again) = self.inspect(&obj.id)? else {
            return Ok(false);
        };
        Ok(again.lease == obj.lease
            && again.takeover_in(now.engine_ms, own) == Some(Duration::ZERO))
    }

    /// Creates the lock object; None when one of that name exists.
    pub fn create(&self, name: &str, info: &LeaseInfo, data: &[u8]) -> Result<Option<String>> {
        #[derive(serde::Deserialize)]
        struct Created {
            #[serde(rename = "ID")]
            id: String,
        }
        let body = serde_json::json!({
            "Name": name,
            "Labels": info.labels(),
            "Data": base64(data),
        });
        match self.call("POST", "/configs/create", Some(body.to_string().as_bytes()))? {
            Answer::Ok(out) => {
                let c: Created = serde_json::from_slice(&out)
                    .context("failed to parse the engine's answer to a config create")?;
                Ok(Some(c.id))
            }
            Answer::Exists => Ok(None),
            Answer::NotFound => Err(unreachable_engine(&anyhow!(
                "creating the config {name} answered `not found`"
            ))),
        }
    }

    /// The object named `name_or_id`, if there is one.
    pub fn inspect(&self, name_or_id: &str) -> Result<Option<LockObject>> {
        let path = format!("/configs/{}", ext::docker::api::encode(name_or_id));
        match self.call("GET", &path, None)? {
            Answer::Ok(out) => {
                let mut text = b"[".to_vec();
                text.extend_from_slice(&out);
                text.push(b']');
                Ok(parse_inspect(&String::from_utf8_lossy(&text))?
                    .into_iter()
                    .next())
            }
            Answer::NotFound | Answer::Exists => Ok(None),
        }
    }

    /// Removes the object with this exact ID; false when it was already gone.
    pub fn remove_id(&self, id: &str) -> Result<bool> {
        let path = format!("/configs/{}", ext::docker::api::encode(id));
        match self.call("DELETE", &path, None)? {
            Answer::Ok(_) => Ok(true),
            Answer::NotFound | Answer::Exists => Ok(false),
        }
    }

    /// Every lock object on the swarm: one listing, which carries each
    /// object whole.
    pub fn list(&self) -> Result<Vec<LockObject>> {
        let path = format!(
            "/configs?{}",
            ext::docker::api::filters(&[("label", LOCK_LABEL)])
        );
        let out = match self.call("GET", &path, None)? {
            Answer::Ok(out) => out,
            _ => return Ok(Vec::new()),
        };
        let mut objects = parse_inspect(&String::from_utf8_lossy(&out))?;
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(objects)
    }
}

/// Standard base64 with padding (the Engine API's `[]byte` in JSON).
pub(crate) fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unreachable_engine(e: &anyhow::Error) -> anyhow::Error {
    Failure::infra(format!(
        "the swarm lock backend (CCCI_LOCK_BACKEND=swarm) cannot use the engine: {e:#}; not falling back to flock, which cannot see other runner hosts"
    ))
}

/// With the swarm backend, checks the host's clock against the engine's
/// and says so past half the margin (what `locks` shows; a run refuses
/// past the whole margin).
pub fn say_clock_skew(settings: &LockSettings) -> Result<()> {
    if settings.backend != Backend::Swarm {
        return Ok(());
    }
    let lease = &settings.lease;
    let now = Swarm::new(settings.docker_host.as_deref())
        .bounded(lease.call_bound())
        .engine_now()?;
    match judge_skew(now.skew_ms(), lease.margin) {
        Some((true, text)) => {
            say!("warning: {text}; runs refuse the swarm lock backend until then")
        }
        Some((false, text)) => say!("warning: {text}"),
        None => {}
    }
    Ok(())
}

/// The time since boot, suspend included (CLOCK_BOOTTIME): what a holder
/// measures its lease with, so a suspended host wakes up knowing how long
/// it slept.
pub fn boot_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec that we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        // Linux has had CLOCK_BOOTTIME since 2.6.39; never reached.
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
