//! The renewal thread of a held lock: the versioned update through the
//! engine API, scheduled from the last counted send time.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::client::{api_gone, boot_now};
use super::lease::{now_ms, LeaseInfo};
use super::protocol::{locked, set_lost, HoldState};
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
                if let Err(ended) = renew_loop(&id, info, sent, lease, &theirs, &shared) {
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
    id: &str,
    mut info: LeaseInfo,
    mut sent: Duration,
    lease: Lease,
    stop: &Latch,
    state: &Mutex<HoldState>,
) -> Result<(), Ended> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Ended::Lost(format!("cannot start the engine API client: {e}")))?;
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
