//! App-domain locks whose authority is the swarm's raft store (SPEC section
//! 11): one lock authority for several runner hosts that feed one swarm.
//!
//! **The object is a swarm config** named from the domain
//! ([`object_name`]). A config is the smallest object the managers keep in
//! raft: creating one is a single replicated write that the managers refuse
//! when the name exists (`AlreadyExists`), so "create" is an atomic
//! test-and-set across every host of the swarm. It needs no image, no
//! scheduler and no task (a zero-replica service would need an image to
//! exist on each node, and the scheduler would watch it), its labels can be
//! rewritten through the engine API's versioned update (`POST
//! /configs/{id}/update?version=N`, refused with "update out of sequence" when
//! anyone wrote since version N), and its ID is never reused. The docker
//! CLI has no verb for that update, so renewal alone goes through the
//! engine API (bollard, on its own small runtime in the renewal thread);
//! create, inspect, list and remove go through `docker` (`CCCI_DOCKER`).
//!
//! The protocol, and the race each step closes:
//! - **acquire** = `docker config create` with the holder, the lease and
//!   the margin in labels. Two hosts racing get one success and one
//!   `AlreadyExists`. The lease runs from the moment the create is *sent*,
//!   measured on CLOCK_BOOTTIME ([`boot_now`], which counts a suspend).
//!   Then the object is **read back by its ID**: acquired means it is still
//!   there with our token and more than the safety allowance
//!   ([`Lease::safety`], one call bound) of the lease left. A create whose
//!   answer came too late (a slow engine, this process stopped right after
//!   the create committed) is removed by its ID and tried again; one that
//!   was taken over meanwhile is gone, and we wait like anyone else.
//! - **renew** = read the object by ID, check the labels are still the ones
//!   we wrote (our token and renewal count), then the versioned update with
//!   the version just read: a write by anyone in between makes the update
//!   fail, and we stop instead of overwriting it. Renewals are scheduled
//!   from the send time of the last one that went through (the create's,
//!   first); a renewal counts only when its answer came within the renewal
//!   bound ([`Lease::renew_bound`]: at most half the margin), and extends
//!   the holder's belief to its send time plus the lease. A lease that ran
//!   out by the boot clock is never renewed again. A renewal that finds
//!   the object gone or changed, or cannot succeed before the lease ends,
//!   marks the lock lost and tells the holder (a run stops its work and
//!   tears down, exit 3).
//! - **mutating steps** (deploy, undeploy, app rm, backup, restore, the
//!   janitor's reap) first ask [`AppLock::may_mutate`]: refused once the
//!   lock is lost or has less than the safety allowance left. A teardown
//!   that may not proceed leaves the app to the next holder's pre-clean.
//! - **release** = remove by ID. An ID names one object forever, so a
//!   release can never delete a lock that someone re-created in between.
//! - **take-over**: judged by the **engine's clock only**. The taker asks
//!   the engine's time (`docker info`'s `SystemTime`) *first*, then reads
//!   the object; the lease is dead when that time is past the object's
//!   manager-set `UpdatedAt` (bumped by the create and every renewal) plus
//!   the larger lease and the larger margin of its own settings and the
//!   holder's labels. Then it removes that exact ID and creates anew. Two
//!   takers race on the create; a taker whose `rm ID` finds nothing, in any
//!   of the forms "not found" comes in ([`classify_refusal`]), lost a race
//!   and waits.
//!
//! **Why two hosts never both believe they hold the lock.** Let S be the
//! real time a holder sent its last counted create or renewal; the engine
//! applied it at U >= S, so its `UpdatedAt` reads U (the engine's clock).
//! The holder's belief ends at S plus the lease, by its boot clock. A
//! taker removes the object only when its engine-time reading T exceeds
//! U' plus lease plus margin, where U' is the `UpdatedAt` it read *after*
//! T. Every renewal the holder counted was answered within the renewal
//! bound (under half the margin), so it was applied before S plus half the
//! margin; if it was applied before T, the taker's read shows it (U' >= S).
//! A renewal applied after T was sent after T minus half the margin, which
//! is past U' plus the lease: past the end of the holder's belief as of
//! U', and a holder never sends a renewal for a lease that ran out. Hence
//! the holder's belief ends at S + lease <= U' + lease < T - margin,
//! before the take-over. No host's own wall clock enters: a host whose
//! clock is off the engine's is warned (past half the margin, on every
//! acquire and in `locks`), and a run refuses to start past the whole
//! margin, because its records and the janitor's ages would be wrong, not
//! because the lock would be.
//!
//! **What remains assumed, and what happens past each:**
//! - *Clock rates.* The holder's boot clock and the managers' clock advance
//!   at the same rate within margin / lease (NTP slews by < 0.05 %). A
//!   holder clock running slower by more shortens the taker's wait below
//!   the holder's belief by the difference: an overlap of at most that.
//!   A manager whose wall clock is *stepped* forward (not slewed) by more
//!   than the margin makes every live lease look dead at once: takers
//!   take over renewing leases, and their holders notice at their next
//!   renewal (the object is gone), having overlapped up to one renewal
//!   interval. The managers' clocks are the operator's to keep stepped
//!   only at boot.
//! - *One engine.* The CLI (`CCCI_DOCKER`) and the API (`DOCKER_HOST`)
//!   reach managers of the same swarm; raft makes create, update and
//!   remove linearizable. A renewal that finds its object missing on its
//!   first try says the two may differ.
//! - *Work already in flight.* [`AppLock::may_mutate`] is asked before
//!   each mutating step, not during one: an `abra app deploy` that started
//!   with the lease standing goes on after a loss until the run's lost-lease
//!   stop ends it (the SIGTERM, then SIGKILL after the run's grace). The
//!   safety allowance (one call bound, (lease − renew) / 2) is the time a
//!   step may take after its check before the lease could end; a step that
//!   takes longer while renewals also fail acts past it. Keep the grace
//!   (`CCCI_GRACE`) below the margin.
//! - *A paused holder between its check and its act.* A process stopped
//!   after `may_mutate` said yes acts when it resumes, possibly past its
//!   lease: no lock without fencing tokens at the resource can stop that.
//!   The window is the step's own start-up, not the whole step.
//! - *The engine's answers are bounded.* Every CLI call is bounded by the
//!   call bound and every renewal call by the renewal bound; an engine
//!   that applies a write after the call's timeout (the answer never came)
//!   leaves an object whose lease is measured from its send time, so it
//!   can only be shorter than the holder assumes, never longer.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::exit::Failure;
use crate::external::{self, Bound};
use crate::lifetime::Latch;
use crate::lock::{self, Kind, OwnerRecord};
use crate::lockbackend::{AppLock, AppLocks, Attempt, Backend, Busy, Lease, LockSettings, OnLost};
use crate::say;

/// The label every lock object carries (its value: the lock kind, `app`).
pub const LOCK_LABEL: &str = "cc-ci.lock";
const L_DOMAIN: &str = "cc-ci.lock.domain";
const L_HOST: &str = "cc-ci.lock.host";
const L_RUN_ID: &str = "cc-ci.lock.run-id";
const L_PID: &str = "cc-ci.lock.pid";
const L_STARTED: &str = "cc-ci.lock.started";
const L_EXPIRES: &str = "cc-ci.lock.expires";
const L_EXPIRES_MS: &str = "cc-ci.lock.expires-ms";
const L_LEASE_MS: &str = "cc-ci.lock.lease-ms";
const L_MARGIN_MS: &str = "cc-ci.lock.margin-ms";
const L_TOKEN: &str = "cc-ci.lock.token";
const L_RENEWALS: &str = "cc-ci.lock.renewals";

/// Docker caps config names at 64 characters of `[a-zA-Z0-9-_.]`,
/// starting and ending with a letter or digit.
pub const NAME_MAX: usize = 64;
const SHORT_PREFIX: &str = "ccci-lock.";
const LONG_PREFIX: &str = "ccci-lockh.";

/// The lock object's name for a (validated) app domain. A domain that fits
/// is used as it is (`ccci-lock.<domain>`: a DNS name is a valid config name
/// tail); a longer one becomes `ccci-lockh.<first characters>.<16 hex of
/// its SHA-256>`. The two prefixes differ, so the mapping is one-to-one up
/// to a hash collision, and a collision is still safe: the domain label is
/// checked, and a lock for another domain is only ever waited on.
pub fn object_name(domain: &str) -> String {
    if SHORT_PREFIX.len() + domain.len() <= NAME_MAX {
        return format!("{SHORT_PREFIX}{domain}");
    }
    let digest = Sha256::digest(domain.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let room = NAME_MAX - LONG_PREFIX.len() - 1 - hex.len();
    let head: String = domain.chars().take(room).collect();
    let head = head.trim_end_matches(['.', '-']);
    format!("{LONG_PREFIX}{head}.{hex}")
}

/// Unix milliseconds of `t`: the clock leases are written in.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

/// A lease time (Unix milliseconds) as RFC 3339 UTC.
pub fn timestamp_ms(ms: u64) -> String {
    crate::log::timestamp(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
}

/// What a lock object's labels say (pure: built from and into label maps).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeaseInfo {
    pub domain: String,
    pub host: String,
    pub run_id: String,
    pub pid: i32,
    pub started: String,
    /// Unix milliseconds after which the lease is expired.
    pub expires_ms: u64,
    pub lease_ms: u64,
    /// The holder's take-over margin (0 on an object written before the
    /// margin travelled in the labels: a taker then uses its own).
    pub margin_ms: u64,
    pub token: String,
    pub renewals: u64,
}

impl LeaseInfo {
    pub fn labels(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        m.insert(LOCK_LABEL.into(), "app".into());
        m.insert(L_DOMAIN.into(), self.domain.clone());
        m.insert(L_HOST.into(), self.host.clone());
        m.insert(L_RUN_ID.into(), self.run_id.clone());
        m.insert(L_PID.into(), self.pid.to_string());
        m.insert(L_STARTED.into(), self.started.clone());
        m.insert(L_EXPIRES.into(), timestamp_ms(self.expires_ms));
        m.insert(L_EXPIRES_MS.into(), self.expires_ms.to_string());
        m.insert(L_LEASE_MS.into(), self.lease_ms.to_string());
        m.insert(L_MARGIN_MS.into(), self.margin_ms.to_string());
        m.insert(L_TOKEN.into(), self.token.clone());
        m.insert(L_RENEWALS.into(), self.renewals.to_string());
        m
    }

    /// None when a label is missing or garbled (not one of our objects, or
    /// one written by hand).
    pub fn from_labels(m: &HashMap<String, String>) -> Option<LeaseInfo> {
        let get = |k: &str| m.get(k).cloned();
        if m.get(LOCK_LABEL).map(String::as_str) != Some("app") {
            return None;
        }
        Some(LeaseInfo {
            domain: get(L_DOMAIN)?,
            host: get(L_HOST)?,
            run_id: get(L_RUN_ID)?,
            pid: get(L_PID)?.parse().ok()?,
            started: get(L_STARTED)?,
            expires_ms: get(L_EXPIRES_MS)?.parse().ok()?,
            lease_ms: get(L_LEASE_MS)?.parse().ok()?,
            margin_ms: match get(L_MARGIN_MS) {
                None => 0,
                Some(v) => v.parse().ok()?,
            },
            token: get(L_TOKEN)?,
            renewals: get(L_RENEWALS)?.parse().ok()?,
        })
    }

    /// Whether another host may take the lease over at `now_ms`: its expiry
    /// passed more than `margin` ago.
    pub fn expired(&self, now_ms: u64, margin: Duration) -> bool {
        now_ms > self.expires_ms.saturating_add(margin.as_millis() as u64)
    }

    /// The holder as an owner record (what waiting messages and the janitor show).
    pub fn owner(&self) -> OwnerRecord {
        OwnerRecord {
            run_id: self.run_id.clone(),
            pid: self.pid,
            host: self.host.clone(),
            cwd: String::new(),
            started: self.started.clone(),
            kind: Kind::App,
        }
    }
}

/// One lock object as `docker config inspect` shows it.
#[derive(Clone, Debug)]
pub struct LockObject {
    pub id: String,
    pub name: String,
    pub version: u64,
    pub labels: HashMap<String, String>,
    /// None for an object whose labels are not a lease (planted by hand).
    pub lease: Option<LeaseInfo>,
    /// The manager-set `UpdatedAt` (Unix milliseconds by the engine's
    /// clock): the create, or the last renewal that went through.
    pub updated_ms: Option<u64>,
}

impl LockObject {
    /// How long until another host may take this lease over, judged by
    /// the engine's clock alone: `UpdatedAt` plus the larger lease and the
    /// larger margin of the holder's labels and `own`, against
    /// `engine_now_ms`. Zero: due now. None: no lease labels or no
    /// `UpdatedAt` (never taken over).
    pub fn takeover_in(&self, engine_now_ms: u64, own: &Lease) -> Option<Duration> {
        let lease = self.lease.as_ref()?;
        let updated = self.updated_ms?;
        let len = lease.lease_ms.max(own.lease.as_millis() as u64);
        let margin = lease.margin_ms.max(own.margin.as_millis() as u64);
        let due = updated.saturating_add(len).saturating_add(margin);
        Some(if engine_now_ms > due {
            Duration::ZERO
        } else {
            Duration::from_millis(due - engine_now_ms + 1)
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectVersion {
    index: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectSpec {
    name: String,
    #[serde(default)]
    labels: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct InspectEntry {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Version")]
    version: InspectVersion,
    #[serde(rename = "Spec")]
    spec: InspectSpec,
    #[serde(rename = "UpdatedAt", default)]
    updated_at: Option<String>,
}

/// Parses `docker config inspect` output (a JSON array; pure).
pub fn parse_inspect(text: &str) -> Result<Vec<LockObject>> {
    let entries: Vec<InspectEntry> =
        serde_json::from_str(text).context("failed to parse `docker config inspect` output")?;
    Ok(entries
        .into_iter()
        .map(|e| {
            let labels = e.spec.labels.unwrap_or_default();
            LockObject {
                lease: LeaseInfo::from_labels(&labels),
                id: e.id,
                name: e.spec.name,
                version: e.version.index,
                labels,
                updated_ms: e
                    .updated_at
                    .as_deref()
                    .and_then(crate::log::parse_timestamp)
                    .map(unix_ms),
            }
        })
        .collect())
}

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
fn api_gone(e: &bollard::errors::Error) -> bool {
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

/// Talks to the swarm's lock objects through the docker CLI.
#[derive(Clone, Debug)]
pub struct Swarm {
    docker: OsString,
    bound: Duration,
}

impl Swarm {
    pub fn new(docker: &OsString) -> Swarm {
        Swarm {
            docker: docker.clone(),
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
    fn output(&self, args: &[&str]) -> Result<crate::proc::Output> {
        let mut cmd = Command::new(&self.docker);
        cmd.args(args);
        let what = format!("docker {}", args[..args.len().min(2)].join(" "));
        // A call that outlasts its bound is killed: a create killed after
        // it committed leaves an object whose token says it is ours (the
        // caller looks), and a lease measured from the send time.
        let grace = (self.bound / 4).min(Duration::from_secs(2));
        let bound = Bound::until(Instant::now() + self.bound, grace);
        external::run(&mut cmd, &what, &bound).map_err(|e| unreachable_engine(&e))
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
                external::tail(&out.stderr, &out.stdout)
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
                    external::tail(&out.stderr, &out.stdout)
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

/// The swarm backend.
pub struct SwarmLocks {
    swarm: Swarm,
    host_id: String,
    lease: Lease,
}

/// A lease we created and read back: its object, its labels, and the boot
/// time its create was sent (the lease runs from there).
struct Claim {
    id: String,
    info: LeaseInfo,
    sent: Duration,
}

impl SwarmLocks {
    pub fn new(settings: &LockSettings) -> SwarmLocks {
        SwarmLocks {
            swarm: Swarm::new(&settings.docker).bounded(settings.lease.call_bound()),
            host_id: settings.host_id.clone(),
            lease: settings.lease,
        }
    }

    fn lease_for(&self, domain: &str, owner: &OwnerRecord) -> LeaseInfo {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        LeaseInfo {
            domain: domain.to_string(),
            host: self.host_id.clone(),
            run_id: owner.run_id.clone(),
            pid: owner.pid,
            started: crate::log::timestamp(SystemTime::now()),
            expires_ms: now_ms() + self.lease.lease.as_millis() as u64,
            lease_ms: self.lease.lease.as_millis() as u64,
            margin_ms: self.lease.margin.as_millis() as u64,
            token: format!("{}-{}-{nanos:x}", self.host_id, std::process::id()),
            renewals: 0,
        }
    }

    /// One step of acquiring: create; on a busy name, take a lease that
    /// the engine's clock says is dead over by its ID (then the caller
    /// tries again at once).
    fn attempt(&self, domain: &str, owner: &OwnerRecord, warned: &mut bool) -> Result<Step> {
        let name = object_name(domain);
        let info = self.lease_for(domain, owner);
        let data = serde_json::to_vec(owner).context("failed to encode the owner record")?;
        // The lease runs from the moment the create is sent: the engine
        // commits it later, so a holder never believes longer than the
        // object's UpdatedAt + lease.
        let sent = boot_now();
        let sent_ms = now_ms();
        match self.swarm.create(&name, &info, &data) {
            Ok(Some(id)) => return self.confirm(id, info, sent, sent_ms, warned),
            Ok(None) => {}
            Err(e) => {
                // A create whose answer was lost may still have happened:
                // the token says whether the object there is ours.
                if let Ok(Some(o)) = self.swarm.inspect(&name) {
                    if o.lease.as_ref().is_some_and(|l| l.token == info.token) {
                        say!(
                            "the create of the lock object {} of {domain} gave no answer ({e:#}), but the object there is ours: checking its lease from the create's send time",
                            o.id
                        );
                        return self.confirm(o.id, info, sent, sent_ms, warned);
                    }
                }
                return Err(e);
            }
        }
        // The engine's time first, the object second: a renewal that lands
        // after this time shows in the inspect, so a lease judged dead was
        // not renewed by an answer its holder heard in time.
        let now = self.swarm.engine_now()?;
        self.warn_skew(&now, warned);
        let Some(obj) = self.swarm.inspect(&name)? else {
            // Released (or taken over) between our create and our look.
            return Ok(Step::Again);
        };
        let Some(lease) = obj.lease.clone() else {
            return Ok(Step::Busy(Busy::default(), Box::new(obj), None));
        };
        let due = obj.takeover_in(now.engine_ms, &self.lease);
        if lease.domain == domain && due == Some(Duration::ZERO) {
            if self.swarm.remove_id(&obj.id)? {
                say!(
                    "the app lock of {domain} had a dead lease ({}, last written {} by the engine's clock, {} before the engine's now): removed lock object {} to take it over",
                    lease.owner().describe(),
                    obj.updated_ms.map_or("?".into(), timestamp_ms),
                    crate::units::human(Duration::from_millis(
                        now.engine_ms.saturating_sub(obj.updated_ms.unwrap_or(now.engine_ms))
                    )),
                    obj.id
                );
            }
            return Ok(Step::Again);
        }
        let age = started_age(&lease.started);
        Ok(Step::Busy(
            Busy {
                owner: Some(lease.owner()),
                age,
            },
            Box::new(obj),
            due,
        ))
    }

    /// Warns (once per acquire) about a host clock off the engine's by
    /// more than half the margin. The lock itself does not rest on the
    /// host's clock (expiry is the engine's, a holder's lease its boot
    /// clock's), so it warns; a run refuses past the margin
    /// ([`AppLocks::preflight`]).
    fn warn_skew(&self, now: &EngineTime, warned: &mut bool) {
        if *warned {
            return;
        }
        if let Some((_, text)) = judge_skew(now.skew_ms(), self.lease.margin) {
            say!("warning: {text}");
            *warned = true;
        }
    }

    /// The create answered: read the object back by its ID and count it
    /// held only if it is still ours with more than the safety allowance of
    /// its lease left by our boot clock. A create whose answer came too
    /// late (a slow engine, or this process stopped right after it) is
    /// removed by its ID, never used.
    fn confirm(
        &self,
        id: String,
        info: LeaseInfo,
        sent: Duration,
        sent_ms: u64,
        warned: &mut bool,
    ) -> Result<Step> {
        let obj = self.swarm.inspect(&id)?;
        let answered_ms = now_ms();
        let Some(obj) = obj.filter(|o| o.lease.as_ref().is_some_and(|l| l.token == info.token))
        else {
            say!(
                "the lock object {id} of {} we created is gone already (taken over while our create's answer was on its way): trying again",
                info.domain
            );
            return Ok(Step::Again);
        };
        let end = sent + self.lease.lease;
        let left = end.saturating_sub(boot_now());
        if left <= self.lease.safety() {
            say!(
                "the create of the lock object {id} of {} answered with only {} of its lease left (the safety allowance is {}): removing it and trying again",
                info.domain,
                crate::units::human(left),
                crate::units::human(self.lease.safety())
            );
            self.swarm.remove_id(&id)?;
            return Ok(Step::Again);
        }
        if let Some(updated) = obj.updated_ms {
            // The create's UpdatedAt is the engine's clock between our
            // send and the read-back's answer: the skew, for free.
            let now = EngineTime {
                engine_ms: updated,
                sent_ms,
                answered_ms,
            };
            self.warn_skew(&now, warned);
        }
        Ok(Step::Created(Claim { id, info, sent }))
    }

    fn hold(&self, claim: Claim, on_lost: OnLost) -> SwarmLock {
        let state = Arc::new(Mutex::new(HoldState {
            lost: None,
            end: claim.sent + self.lease.lease,
        }));
        let renewer = Renewer::start(
            claim.id.clone(),
            claim.info.clone(),
            claim.sent,
            self.lease,
            Arc::clone(&state),
            on_lost,
        );
        SwarmLock {
            swarm: self.swarm.clone(),
            id: claim.id,
            domain: claim.info.domain.clone(),
            token: claim.info.token.clone(),
            lease: self.lease,
            state,
            renewer,
            done: false,
        }
    }
}

fn started_age(started: &str) -> Option<Duration> {
    let t = crate::log::parse_timestamp(started)?;
    SystemTime::now().duration_since(t).ok()
}

enum Step {
    Created(Claim),
    Again,
    /// Busy; with how long until the engine's clock lets us take it over.
    Busy(Busy, Box<LockObject>, Option<Duration>),
}

/// How long a waiter without an event watch sleeps between attempts: from
/// 50 ms doubling to this.
const POLL_MAX: Duration = Duration::from_millis(250);
/// How long a waiter with an event watch sleeps at most between attempts:
/// the backstop for an event the engine did not deliver.
const WATCH_BACKSTOP: Duration = Duration::from_secs(2);

/// Wakes a waiter when its lock object changes: `docker events` for the
/// object's name, so a release is seen in milliseconds without a docker
/// process per poll. The stream is replayed from just before the attempt
/// that found the lock busy (`--since`), so a release that lands between
/// that attempt and the moment the subscription is live is not missed. A
/// dead holder sends no event: the waiter also wakes at the lease's expiry
/// plus the margin. If the watch cannot start or its stream ends, the
/// waiter falls back to polling.
struct Watch {
    child: crate::proc::Child,
    out: std::fs::File,
}

/// What ended a wait on a [`Watch`].
enum Woke {
    /// An event, or the time ran out: try again.
    Again,
    Cancelled,
    /// The stream ended: poll instead.
    Closed,
}

impl Watch {
    fn start(docker: &OsString, name: &str, since: SystemTime) -> Option<Watch> {
        let since = since
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()?
            .saturating_sub(Duration::from_secs(1));
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
        let flags = nix::fcntl::fcntl(read.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).ok()?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(read.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags)).ok()?;
        let mut cmd = Command::new(docker);
        cmd.args(["events", "--filter", "type=config", "--filter"])
            .arg(format!("config={name}"))
            .arg("--since")
            .arg(format!("{}.{:09}", since.as_secs(), since.subsec_nanos()))
            .args(["--format", "{{.Action}}"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::from(write))
            .stderr(std::process::Stdio::null());
        let child = crate::proc::spawn(&mut cmd, crate::proc::Isolation::Group);
        // The Command keeps its copy of the write end until dropped: drop it
        // now, or the stream never reports its end.
        drop(cmd);
        Some(Watch {
            child: child.ok()?,
            out: std::fs::File::from(read),
        })
    }

    fn wait(&mut self, cancel: Option<&Latch>, until: Instant) -> Woke {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::io::Read;
        loop {
            let now = Instant::now();
            if now >= until {
                return Woke::Again;
            }
            let ms = (until - now).as_millis().clamp(1, i32::MAX as u128) as i32;
            let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
            let mut fds = vec![PollFd::new(self.out.as_fd(), PollFlags::POLLIN)];
            if let Some(c) = cancel {
                fds.push(PollFd::new(c.fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return Woke::Closed,
            }
            drop(fds);
            if cancel.is_some_and(Latch::is_set) {
                return Woke::Cancelled;
            }
            // Drain what arrived: any event means "look again".
            let mut buf = [0u8; 4096];
            let mut got = false;
            loop {
                match self.out.read(&mut buf) {
                    Ok(0) => return if got { Woke::Again } else { Woke::Closed },
                    Ok(_) => got = true,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break, // EAGAIN: drained
                }
            }
            if got {
                return Woke::Again;
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.terminate(Duration::from_millis(500));
    }
}

impl AppLocks for SwarmLocks {
    fn backend(&self) -> Backend {
        Backend::Swarm
    }

    fn preflight(&self) -> Result<()> {
        let now = self.swarm.engine_now()?;
        match judge_skew(now.skew_ms(), self.lease.margin) {
            None => Ok(()),
            Some((true, text)) => Err(Failure::infra(format!(
                "refusing to run with the swarm lock backend: {text}"
            ))),
            Some((false, text)) => {
                say!("warning: {text}");
                Ok(())
            }
        }
    }

    fn try_acquire(&self, domain: &str, owner: &OwnerRecord, on_lost: OnLost) -> Result<Attempt> {
        lock::validate_name(Kind::App, domain)?;
        let mut warned = false;
        // A take-over ends in `Again`; a few rounds settle any race.
        for _ in 0..5 {
            match self.attempt(domain, owner, &mut warned)? {
                Step::Created(claim) => {
                    return Ok(Attempt::Acquired(Box::new(self.hold(claim, on_lost))))
                }
                Step::Again => continue,
                Step::Busy(b, _, _) => return Ok(Attempt::Busy(b)),
            }
        }
        Ok(Attempt::Busy(Busy::default()))
    }

    fn acquire(
        &self,
        domain: &str,
        owner: &OwnerRecord,
        deadline: Option<Instant>,
        cancel: Option<&Latch>,
        progress_every: Duration,
        progress: &mut dyn FnMut(Option<&OwnerRecord>, Duration),
        on_lost: OnLost,
    ) -> Result<crate::lockbackend::Acquired> {
        use crate::lockbackend::Acquired;
        lock::validate_name(Kind::App, domain)?;
        let started = Instant::now();
        let mut reported: Option<(String, Instant)> = None;
        let mut pause = Duration::from_millis(50);
        let mut watch: Option<Watch> = None;
        let mut watch_failed = false;
        let mut warned = false;
        loop {
            if cancel.is_some_and(Latch::is_set) {
                return Ok(Acquired::Cancelled);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Acquired::TimedOut);
            }
            let attempted = SystemTime::now();
            let (busy, obj, due) = match self.attempt(domain, owner, &mut warned)? {
                Step::Created(claim) => {
                    return Ok(Acquired::Acquired(Box::new(self.hold(claim, on_lost))))
                }
                Step::Again => continue,
                Step::Busy(b, o, due) => (b, o, due),
            };
            // Report when first found busy, when the holder changes, and
            // every `progress_every`.
            let due_report = match &reported {
                None => true,
                Some((id, _)) if *id != obj.id => true,
                Some((_, at)) => !progress_every.is_zero() && at.elapsed() >= progress_every,
            };
            if due_report {
                progress(busy.owner.as_ref(), started.elapsed());
                reported = Some((obj.id.clone(), Instant::now()));
            }
            if watch.is_none() && !watch_failed {
                watch = Watch::start(&self.swarm.docker, &obj.name, attempted);
                watch_failed = watch.is_none();
            }
            if let Some(w) = watch.as_mut() {
                // A dead holder sends no event: wake when the engine's
                // clock lets its lease be taken over, and at the backstop
                // whatever happens.
                let mut wait = WATCH_BACKSTOP;
                if let Some(d) = due {
                    wait = wait.min(d + Duration::from_millis(20));
                }
                let mut until = Instant::now() + wait;
                if let Some(d) = deadline {
                    until = until.min(d);
                }
                match w.wait(cancel, until) {
                    Woke::Again => {}
                    Woke::Cancelled => return Ok(Acquired::Cancelled),
                    Woke::Closed => {
                        watch = None;
                        watch_failed = true;
                    }
                }
                continue;
            }
            let mut until = Instant::now() + pause;
            if let Some(d) = deadline {
                until = until.min(d);
            }
            match cancel {
                Some(c) => {
                    if c.wait_until(until) {
                        return Ok(Acquired::Cancelled);
                    }
                }
                None => std::thread::sleep(until.saturating_duration_since(Instant::now())),
            }
            pause = (pause * 2).min(POLL_MAX);
        }
    }
}

/// What a holder and its renewal thread share: whether the lock was lost,
/// and the boot time at which the holder's belief ends (the send time of
/// its last create or renewal that was answered in time, plus the lease).
struct HoldState {
    lost: Option<Lost>,
    end: Duration,
}

/// A held swarm lock. Dropping it stops the renewals and removes the
/// object by ID (best effort: an object we cannot remove expires).
pub struct SwarmLock {
    swarm: Swarm,
    id: String,
    domain: String,
    token: String,
    lease: Lease,
    state: Arc<Mutex<HoldState>>,
    renewer: Option<Renewer>,
    done: bool,
}

/// Why a held lock was lost, and whether the object at its ID may still be
/// removed at release: not when someone else rewrote it.
#[derive(Clone, Debug)]
struct Lost {
    why: String,
    foreign: bool,
}

fn locked(state: &Mutex<HoldState>) -> std::sync::MutexGuard<'_, HoldState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl SwarmLock {
    fn finish(&mut self) -> Result<()> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        if let Some(r) = self.renewer.take() {
            r.stop();
        }
        let lost = locked(&self.state).lost.clone();
        if lost.as_ref().is_some_and(|l| l.foreign) {
            say!(
                "not removing the lock object {} of {}: someone else wrote it",
                self.id,
                self.domain
            );
            return Ok(());
        }
        match self.swarm.remove_id(&self.id) {
            Ok(true) => Ok(()),
            Ok(false) if lost.is_some() => Ok(()),
            Ok(false) => {
                say!(
                    "the lock object {} of {} was already gone at release",
                    self.id,
                    self.domain
                );
                Ok(())
            }
            Err(e) => Err(e).with_context(|| {
                format!(
                    "failed to release the swarm lock of {} (object {}); it expires with its lease",
                    self.domain, self.id
                )
            }),
        }
    }
}

fn set_lost(state: &Mutex<HoldState>, why: &str, foreign: bool) {
    locked(state).lost = Some(Lost {
        why: why.to_string(),
        foreign,
    });
}

impl AppLock for SwarmLock {
    fn lost(&self) -> Option<String> {
        locked(&self.state).lost.as_ref().map(|l| l.why.clone())
    }
    fn may_mutate(&self) -> Result<()> {
        let (lost, end) = {
            let s = locked(&self.state);
            (s.lost.clone(), s.end)
        };
        if let Some(l) = lost {
            return Err(Failure::infra(format!(
                "the app lock of {} was lost ({}): not touching the app",
                self.domain, l.why
            )));
        }
        let left = end.saturating_sub(boot_now());
        if left <= self.lease.safety() {
            return Err(Failure::infra(format!(
                "the lease of the app lock of {} has {} left, under the safety allowance of {} (its renewals are failing): not touching the app",
                self.domain,
                crate::units::human(left),
                crate::units::human(self.lease.safety())
            )));
        }
        Ok(())
    }
    fn confirm_held(&self) -> Result<()> {
        self.may_mutate()?;
        let theirs = self.swarm.inspect(&self.id)?;
        if theirs
            .as_ref()
            .and_then(|o| o.lease.as_ref())
            .is_some_and(|l| l.token == self.token)
        {
            return Ok(());
        }
        Err(Failure::infra(format!(
            "the lock object {} of {} is no longer ours ({}) though its lease was not known lost",
            self.id,
            self.domain,
            if theirs.is_some() {
                "its labels changed"
            } else {
                "it is gone"
            }
        )))
    }
    fn previous_owner(&self) -> Option<OwnerRecord> {
        None
    }
    fn release(mut self: Box<Self>) -> Result<()> {
        self.finish()
    }
    fn remove(mut self: Box<Self>) -> Result<()> {
        self.finish()
    }
}

impl Drop for SwarmLock {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            say!("warning: {e:#}");
        }
    }
}

/// The renewal thread of one held lock.
struct Renewer {
    stop: Arc<Latch>,
    thread: Option<JoinHandle<()>>,
}

impl Renewer {
    fn start(
        id: String,
        info: LeaseInfo,
        sent: Duration,
        lease: Lease,
        state: Arc<Mutex<HoldState>>,
        on_lost: OnLost,
    ) -> Option<Renewer> {
        let stop = match Latch::new() {
            Ok(l) => Arc::new(l),
            Err(e) => {
                let why = format!("cannot start renewing the lease: {e:#}");
                set_lost(&state, &why, false);
                on_lost(&why);
                return None;
            }
        };
        let theirs = Arc::clone(&stop);
        let shared = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("lease-renewer".into())
            .spawn(move || {
                if let Err((why, foreign)) = renew_loop(&id, info, sent, lease, &theirs, &shared) {
                    set_lost(&shared, &why, foreign);
                    on_lost(&why);
                }
            });
        match thread {
            Ok(t) => Some(Renewer {
                stop,
                thread: Some(t),
            }),
            Err(e) => {
                let why = format!("cannot start the lease renewal thread: {e}");
                set_lost(&state, &why, false);
                None
            }
        }
    }

    fn stop(mut self) {
        self.stop.set();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Why a renewal failed.
enum RenewError {
    /// The object is gone: stop now.
    Lost(String),
    /// Someone else wrote the object: stop now, and leave it alone.
    Foreign(String),
    /// The engine did not answer as it should: try again while the lease lasts.
    Transient(String),
}

/// The instant `boot` (a boot-clock time) falls at.
fn instant_at(boot: Duration) -> Instant {
    Instant::now() + boot.saturating_sub(boot_now())
}

/// Renews until stopped (Ok) or until the lease is lost (Err: why, and
/// whether someone else wrote the object). Renewals are scheduled from the
/// send time of the last one that went through (the create's, first), so a
/// slow create or a stall eats into the schedule, never past the lease.
fn renew_loop(
    id: &str,
    mut info: LeaseInfo,
    mut sent: Duration,
    lease: Lease,
    stop: &Latch,
    state: &Mutex<HoldState>,
) -> Result<(), (String, bool)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (format!("cannot start the engine API client: {e}"), false))?;
    let mut client: Option<bollard::Docker> = None;
    let mut next = sent + lease.renew_every;
    loop {
        if stop.wait_until(instant_at(next)) {
            return Ok(());
        }
        let end = sent + lease.lease;
        // The whole renewal ends by our lease's end, whatever hangs.
        let left = end.saturating_sub(boot_now());
        let outcome = rt.block_on(async {
            tokio::time::timeout(left, renew_once(&mut client, id, &mut info, lease, end))
                .await
                .unwrap_or_else(|_| {
                    Err(RenewError::Transient(
                        "the engine API did not answer before the lease ran out".into(),
                    ))
                })
        });
        match outcome {
            Ok(at) => {
                sent = at;
                locked(state).end = at + lease.lease;
                next = at + lease.renew_every;
            }
            Err(RenewError::Lost(why)) => return Err((why, false)),
            Err(RenewError::Foreign(why)) => return Err((why, true)),
            Err(RenewError::Transient(why)) => {
                // Give up at our own expiry: takers wait a margin more, by
                // the engine's clock.
                if boot_now() + lease.renew_bound() >= end {
                    return Err((
                        format!("could not renew the lease before it expired: {why}"),
                        false,
                    ));
                }
                say!(
                    "warning: renewing the lease of {} failed, retrying: {why}",
                    info.domain
                );
                client = None;
                next = boot_now() + (lease.renew_every / 4).max(Duration::from_millis(100));
            }
        }
    }
}

/// One renewal: read the object by ID, check it is still as we wrote it,
/// then the versioned update. Ok: the boot time the update was sent (its
/// answer came within the renewal bound, below the margin). `end` is when
/// our belief ends: a lease that ran out is never revived.
async fn renew_once(
    client: &mut Option<bollard::Docker>,
    id: &str,
    info: &mut LeaseInfo,
    lease: Lease,
    end: Duration,
) -> Result<Duration, RenewError> {
    let limit = lease.renew_bound();
    let transient = |e: String| RenewError::Transient(e);
    if client.is_none() {
        let c = bollard::Docker::connect_with_defaults()
            .map_err(|e| transient(format!("cannot connect to the engine API: {e}")))?
            // bollard keeps whole seconds (0 would time every call out):
            // its own bound rounded up, ours by tokio below.
            .with_timeout(Duration::from_secs(
                lease.call_bound().as_secs_f64().ceil().max(1.0) as u64,
            ));
        let c = tokio::time::timeout(lease.call_bound(), c.negotiate_version())
            .await
            .map_err(|_| transient("the engine API did not answer".into()))?
            .map_err(|e| transient(format!("cannot negotiate the engine API version: {e}")))?;
        *client = Some(c);
    }
    let Some(c) = client.as_ref() else {
        return Err(transient("no engine API client".into()));
    };
    let expired = |info: &LeaseInfo| {
        RenewError::Lost(format!(
            "the lease of {} ran out before it could be renewed (was this process stopped, or the host suspended?)",
            info.domain
        ))
    };
    if boot_now() >= end {
        return Err(expired(info));
    }
    let obj = match tokio::time::timeout(limit, c.inspect_config(id)).await {
        Err(_) => return Err(transient("inspecting the lock object timed out".into())),
        Ok(Err(e)) if api_gone(&e) => {
            // Before any renewal went through, a missing object may also
            // mean the API is another engine than the CLI's.
            let hint = if info.renewals == 0 {
                "; or DOCKER_HOST names another engine than the docker CLI uses"
            } else {
                ""
            };
            return Err(RenewError::Lost(format!(
                "the lock object {id} of {} is gone (deleted behind our back, or taken over{hint})",
                info.domain
            )));
        }
        Ok(Err(e)) => return Err(transient(format!("inspecting the lock object failed: {e}"))),
        Ok(Ok(o)) => o,
    };
    let version = obj
        .version
        .as_ref()
        .and_then(|v| v.index)
        .ok_or_else(|| transient("the lock object has no version".into()))?;
    let mut spec = obj
        .spec
        .clone()
        .ok_or_else(|| transient("the lock object has no spec".into()))?;
    let theirs = spec.labels.as_ref().and_then(LeaseInfo::from_labels);
    match theirs {
        Some(t) if t == *info => {}
        // Our own last write, whose answer we did not hear (it timed out):
        // only we write our token.
        Some(t) if t.token == info.token && t.renewals == info.renewals + 1 => *info = t,
        _ => {
            return Err(RenewError::Foreign(format!(
                "the lock object {id} of {} was changed by someone else (its labels are not the ones we wrote)",
                info.domain
            )))
        }
    }
    // A lease that ran out is never revived: a holder that was stopped
    // (SIGSTOP, a paused VM) past its end may already have been taken
    // over, and a taker removes by ID without a version check.
    let at = boot_now();
    if at + limit >= end {
        return Err(expired(info));
    }
    let mut next = info.clone();
    next.expires_ms = now_ms() + lease.lease.as_millis() as u64;
    next.renewals += 1;
    spec.labels = Some(next.labels());
    let opts = bollard::query_parameters::UpdateConfigOptionsBuilder::new()
        .version(version as i64)
        .build();
    // Answered within `limit` (below the margin): applied before any
    // taker's judgement that reads the engine's time after it.
    match tokio::time::timeout(limit, c.update_config(id, spec, opts)).await {
        Err(_) => Err(transient("updating the lock object timed out".into())),
        Ok(Err(e)) if api_gone(&e) => Err(RenewError::Lost(format!(
            "the lock object {id} of {} is gone (deleted behind our back, or taken over)",
            info.domain
        ))),
        Ok(Err(bollard::errors::Error::DockerResponseServerError { message, .. }))
            if message.contains("out of sequence") =>
        {
            Err(RenewError::Foreign(format!(
                "the lock object {id} of {} was written by someone else while we renewed it ({message})",
                info.domain
            )))
        }
        Ok(Err(e)) => Err(transient(format!("updating the lock object failed: {e}"))),
        Ok(Ok(())) => {
            *info = next;
            Ok(at)
        }
    }
}
