//! The renewal thread of a held lock: the versioned update through the
//! engine client, scheduled from the last counted send time.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::client::{boot_now, classify_refusal, Refusal};
use super::hold::{locked, set_lost, HoldState};
use super::lease::{now_ms, LeaseInfo};
use crate::ext::docker::api::{self, Reply};
use crate::ext::docker::Docker;
use crate::ext::Bound;
use crate::lock::backend::{Lease, OnLost};
use crate::say;
use crate::sys::latch::Latch;

/// The renewal thread of one held lock.
pub(super) struct Renewer {
    stop: Arc<Latch>,
    thread: Option<JoinHandle<()>>,
}

impl Renewer {
    pub(super) fn start(
        docker: Docker,
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
                if let Err(ended) = renew_loop(&docker, &id, info, sent, lease, &theirs, &shared) {
                    let foreign = matches!(ended, Ended::Foreign(_));
                    let (Ended::Lost(why) | Ended::Foreign(why)) = ended;
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

    pub(super) fn stop(mut self) {
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

/// Why holding ended before anyone asked it to stop.
enum Ended {
    /// The lease is gone or ran out.
    Lost(String),
    /// Someone else wrote the object: it is theirs now, left alone.
    Foreign(String),
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
    docker: &Docker,
    id: &str,
    mut info: LeaseInfo,
    mut sent: Duration,
    lease: Lease,
    stop: &Latch,
    state: &Mutex<HoldState>,
) -> Result<(), Ended> {
    let mut next = sent + lease.renew_every;
    loop {
        if stop.wait_until(instant_at(next)) {
            return Ok(());
        }
        let end = sent + lease.lease;
        match renew_once(docker, id, &mut info, lease, end) {
            Ok(at) => {
                sent = at;
                locked(state).end = at + lease.lease;
                next = at + lease.renew_every;
            }
            Err(RenewError::Lost(why)) => return Err(Ended::Lost(why)),
            Err(RenewError::Foreign(why)) => return Err(Ended::Foreign(why)),
            Err(RenewError::Transient(why)) => {
                // Give up at our own expiry: takers wait a margin more, by
                // the engine's clock.
                if boot_now() + lease.renew_bound() >= end {
                    return Err(Ended::Lost(format!(
                        "could not renew the lease before it expired: {why}"
                    )));
                }
                say!(
                    "warning: renewing the lease of {} failed, retrying: {why}",
                    info.domain
                );
                next = boot_now() + (lease.renew_every / 4).max(Duration::from_millis(100));
            }
        }
    }
}

/// The lock object as the renewal reads it.
#[derive(serde::Deserialize)]
struct Config {
    #[serde(rename = "Version")]
    version: Version,
    #[serde(rename = "Spec")]
    spec: serde_json::Map<String, serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct Version {
    #[serde(rename = "Index")]
    index: u64,
}

/// One renewal: read the object by ID, check it is still as we wrote it,
/// then the versioned update. Ok: the boot time the update was sent (its
/// answer came within the renewal bound, below the margin). `end` is when
/// our belief ends: a lease that ran out is never revived. Each call is
/// bounded by the renewal bound and, whatever hangs, by `end`.
fn renew_once(
    docker: &Docker,
    id: &str,
    info: &mut LeaseInfo,
    lease: Lease,
    end: Duration,
) -> Result<Duration, RenewError> {
    let limit = lease.renew_bound();
    let transient = |e: String| RenewError::Transient(e);
    let bound = || {
        let left = end.saturating_sub(boot_now()).min(limit);
        Bound::until(Instant::now() + left, Duration::ZERO)
    };
    let engine = docker
        .engine()
        .map_err(|e| transient(format!("no engine API client: {e:#}")))?;
    let expired = |info: &LeaseInfo| {
        RenewError::Lost(format!(
            "the lease of {} ran out before it could be renewed (was this process stopped, or the host suspended?)",
            info.domain
        ))
    };
    if boot_now() >= end {
        return Err(expired(info));
    }
    let path = format!("/configs/{}", api::encode(id));
    let gone = |r: &Reply| r.status == 404 || classify_refusal(&r.message()) == Refusal::NotFound;
    let r = engine
        .get(&path, &bound())
        .map_err(|e| transient(format!("inspecting the lock object failed: {e:#}")))?;
    if gone(&r) {
        return Err(RenewError::Lost(format!(
            "the lock object {id} of {} is gone (deleted behind our back, or taken over)",
            info.domain
        )));
    }
    if !r.ok() {
        return Err(transient(format!(
            "inspecting the lock object failed ({}): {}",
            r.status,
            r.message()
        )));
    }
    let obj: Config = serde_json::from_slice(&r.body)
        .map_err(|e| transient(format!("the lock object could not be read: {e}")))?;
    let mut spec = obj.spec;
    let labels: Option<std::collections::HashMap<String, String>> = spec
        .get("Labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok());
    let theirs = labels.as_ref().and_then(LeaseInfo::from_labels);
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
    spec.insert(
        "Labels".into(),
        serde_json::to_value(next.labels()).unwrap_or_default(),
    );
    let body = serde_json::Value::Object(spec).to_string();
    // Answered within `limit` (below the margin): applied before any
    // taker's judgement that reads the engine's time after it.
    let r = engine
        .send(
            "POST",
            &format!("{path}/update?version={}", obj.version.index),
            Some(body.as_bytes()),
            &bound(),
        )
        .map_err(|e| transient(format!("updating the lock object failed: {e:#}")))?;
    if r.ok() {
        *info = next;
        return Ok(at);
    }
    let message = r.message();
    if gone(&r) {
        return Err(RenewError::Lost(format!(
            "the lock object {id} of {} is gone (deleted behind our back, or taken over)",
            info.domain
        )));
    }
    if message.contains("out of sequence") {
        return Err(RenewError::Foreign(format!(
            "the lock object {id} of {} was written by someone else while we renewed it ({message})",
            info.domain
        )));
    }
    Err(transient(format!(
        "updating the lock object failed ({}): {message}",
        r.status
    )))
}
