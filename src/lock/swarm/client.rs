//! The engine as the lock sees it: the docker CLI client ([`Swarm`]), the
//! engine's clock and the host's skew against it, the forms of "not
//! found", and the boot clock a holder measures its lease with.

use std::ffi::OsString;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use super::lease::{now_ms, parse_inspect, unix_ms, LeaseInfo, LockObject, LOCK_LABEL};
use crate::exit::Failure;
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

/// Whether an engine API error means the object is gone (404, or any
/// not-found message).
pub(super) fn api_gone(e: &bollard::errors::Error) -> bool {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => *status_code == 404 || classify_refusal(message) == Refusal::NotFound,
        _ => false,
    }
}

/// How a docker CLI call about one object ended.
#[derive(Debug)]
enum Cli {
    Ok(String),
    Exists,
    NotFound,
}

/// How long one docker CLI call may take when no lease says otherwise
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
    pub fn new(docker: &OsString) -> Swarm {
        Swarm {
            docker: Docker::new(docker),
            bound: CALL_BOUND,
        }
    }

    /// The same client, each call bounded by `bound`.
    pub fn bounded(mut self, bound: Duration) -> Swarm {
        self.bound = bound;
        self
    }

    /// Runs `docker ARGS`, bounded; a docker that cannot be run at all,
    /// or that outlasts the bound, means the engine cannot be used (exit 3).
    fn output(&self, args: &[&str]) -> Result<crate::sys::spawn::Output> {
        // A call that outlasts its bound is killed: a create killed after
        // it committed leaves an object whose token says it is ours (the
        // caller looks), and a lease measured from the send time.
        let grace = (self.bound / 4).min(Duration::from_secs(2));
        let bound = Bound::until(Instant::now() + self.bound, grace);
        self.docker
            .call(args, &bound)
            .map_err(|e| unreachable_engine(&e))
    }

    fn call(&self, args: &[&str]) -> Result<Cli> {
        let out = self.output(args)?;
        if out.status.success() {
            return Ok(Cli::Ok(out.stdout));
        }
        match classify_refusal(&out.stderr) {
            Refusal::Exists => Ok(Cli::Exists),
            Refusal::NotFound => Ok(Cli::NotFound),
            Refusal::Other => Err(unreachable_engine(&anyhow!(
                "`docker {}` failed ({}): {}",
                args.join(" "),
                out.status,
                ext::tail(&out.stderr, &out.stdout)
            ))),
        }
    }

    /// The engine's current time (`docker info`'s `SystemTime`).
    pub fn engine_now(&self) -> Result<EngineTime> {
        let sent_ms = now_ms();
        let out = match self.call(&["info", "--format", "{{json .SystemTime}}"])? {
            Cli::Ok(out) => out,
            _ => return Err(unreachable_engine(&anyhow!("`docker info` gave no time"))),
        };
        let answered_ms = now_ms();
        let text: String = serde_json::from_str(out.trim()).with_context(|| {
            format!("failed to parse the engine's time from `docker info`: {out:?}")
        })?;
        let engine = crate::log::parse_timestamp(&text).ok_or_else(|| {
            unreachable_engine(&anyhow!(
                "the engine's time {text:?} is not an RFC 3339 UTC time"
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
        let mut file = tempfile::NamedTempFile::new()
            .context("failed to create the lock object's data file")?;
        file.write_all(data)
            .context("failed to write the lock object's data file")?;
        let path = file.path().to_string_lossy().into_owned();
        let mut labels: Vec<(String, String)> = info.labels().into_iter().collect();
        labels.sort();
        let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["config", "create"];
        for p in &pairs {
            args.push("--label");
            args.push(p);
        }
        args.push(name);
        args.push(&path);
        match self.call(&args)? {
            Cli::Ok(out) => Ok(Some(out.trim().to_string())),
            Cli::Exists => Ok(None),
            Cli::NotFound => Err(unreachable_engine(&anyhow!(
                "`docker config create {name}` answered `not found`"
            ))),
        }
    }

    /// The object named `name_or_id`, if there is one.
    pub fn inspect(&self, name_or_id: &str) -> Result<Option<LockObject>> {
        match self.call(&["config", "inspect", name_or_id])? {
            Cli::Ok(out) => Ok(parse_inspect(&out)?.into_iter().next()),
            Cli::NotFound | Cli::Exists => Ok(None),
        }
    }

    /// Removes the object with this exact ID; false when it was already gone.
    pub fn remove_id(&self, id: &str) -> Result<bool> {
        match self.call(&["config", "rm", id])? {
            Cli::Ok(_) => Ok(true),
            Cli::NotFound | Cli::Exists => Ok(false),
        }
    }

    /// Every lock object on the swarm.
    pub fn list(&self) -> Result<Vec<LockObject>> {
        let filter = format!("label={LOCK_LABEL}");
        let ids = match self.call(&["config", "ls", "--filter", &filter, "--format", "{{.ID}}"])? {
            Cli::Ok(out) => out
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One inspect for all: an object removed since the listing is
        // simply missing from its answer (docker prints the others and
        // fails for the missing one).
        let mut args = vec!["config", "inspect"];
        args.extend(ids.iter().map(String::as_str));
        let out = self.output(&args)?;
        let mut objects = match parse_inspect(&out.stdout) {
            Ok(o) => o,
            Err(_) if !out.status.success() => {
                return Err(unreachable_engine(&anyhow!(
                    "`docker config inspect` failed ({}): {}",
                    out.status,
                    ext::tail(&out.stderr, &out.stdout)
                )))
            }
            Err(e) => return Err(e),
        };
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(objects)
    }
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
    let now = Swarm::new(&settings.docker)
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
