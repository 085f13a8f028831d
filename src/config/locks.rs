//! The lock settings from the injected environment (SPEC sections 4 and
//! 11): the backend, this host's id and the swarm lease, each checked and
//! named in its error (exit 2) before anything is touched. Plain data:
//! `lock` opens the backend these settings choose and owns what a lease
//! means to the protocol (`lock::backend`).

use std::time::Duration;

use anyhow::Result;

use super::names::{bad, check_host_id, HOST_ID_MAX};
use super::Env;
use crate::exit::Failure;

/// Which authority arbitrates app-domain locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `flock` on `locks/apps/<domain>.lock`: one host's kernel.
    Flock,
    /// A lease object in the swarm's raft store: every host of one swarm.
    Swarm,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Flock => "flock",
            Backend::Swarm => "swarm",
        }
    }
}

/// The lease of a swarm lock: how long a holder's claim lasts without
/// renewal, how often the holder renews it, and how long past its expiry
/// another host still waits before taking it over (the allowance for clock
/// skew between hosts and for a renewal in flight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub lease: Duration,
    pub renew_every: Duration,
    pub margin: Duration,
}

/// The default lease: a crashed holder blocks its domain for at most
/// lease + margin (40 s); a live one renews three times per lease, so two
/// renewals may fail in a row before it gives up.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The shortest take-over margin: renewals are bounded by half of it.
pub const MARGIN_MIN: Duration = Duration::from_millis(200);

/// Validated lock settings (from `CCCI_LOCK_BACKEND`, `CCCI_HOST_ID`,
/// `CCCI_LOCK_LEASE`, `CCCI_LOCK_RENEW`, `CCCI_LOCK_MARGIN`, `DOCKER_HOST`).
#[derive(Clone, Debug)]
pub struct LockSettings {
    pub backend: Backend,
    /// This runner host's id in swarm lock labels (default: the host name).
    pub host_id: String,
    pub lease: Lease,
    /// The engine (`DOCKER_HOST`; None: the default socket).
    pub docker_host: Option<String>,
}

fn duration_var(env: &Env, var: &str) -> Result<Option<Duration>> {
    match env.get(var).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => crate::units::parse_duration(v)
            .map(Some)
            .map_err(|e| Failure::usage(format!("{var}: {e}"))),
    }
}

/// Parses and checks the lock settings (pure: `hostname` is the default
/// host id).
pub fn settings(env: &Env, hostname: &str) -> Result<LockSettings> {
    let backend = match env.get("CCCI_LOCK_BACKEND").map(String::as_str) {
        None | Some("") | Some("flock") => Backend::Flock,
        Some("swarm") => Backend::Swarm,
        Some(other) => {
            return Err(bad(
                "CCCI_LOCK_BACKEND",
                other,
                "the lock backend is `flock` (one host, the default) or `swarm` (several runner hosts on one swarm)",
            ))
        }
    };
    let host_id = match env.get("CCCI_HOST_ID").filter(|v| !v.is_empty()) {
        Some(v) => {
            check_host_id(v)?;
            v.clone()
        }
        // A host name that is no valid id (rare) is cleaned, not refused:
        // the operator did not choose it.
        None => clean_host_id(hostname),
    };
    let lease_d = duration_var(env, "CCCI_LOCK_LEASE")?.unwrap_or(DEFAULT_LEASE);
    let renew = duration_var(env, "CCCI_LOCK_RENEW")?.unwrap_or(lease_d / 3);
    let margin = duration_var(env, "CCCI_LOCK_MARGIN")?.unwrap_or(lease_d / 3);
    let lease = Lease {
        lease: lease_d,
        renew_every: renew,
        margin,
    };
    check_lease(&lease)?;
    Ok(LockSettings {
        backend,
        host_id,
        lease,
        docker_host: super::docker_host(env),
    })
}

/// The rules a lease obeys, each named: the lease at least 1 s, renewals
/// at most half the lease apart (so one failed renewal never expires it),
/// a positive margin.
pub fn check_lease(l: &Lease) -> Result<()> {
    let shown = |d: Duration| crate::units::human(d);
    if l.lease < Duration::from_secs(1) {
        return Err(bad(
            "CCCI_LOCK_LEASE",
            &shown(l.lease),
            "the lease is at least 1s",
        ));
    }
    if l.renew_every.is_zero() || l.renew_every * 2 > l.lease {
        return Err(bad(
            "CCCI_LOCK_RENEW",
            &shown(l.renew_every),
            "renewals are more than 0 and at most half the lease (CCCI_LOCK_LEASE) apart",
        ));
    }
    if l.margin < MARGIN_MIN {
        return Err(bad(
            "CCCI_LOCK_MARGIN",
            &shown(l.margin),
            "the take-over margin is at least 200ms (a renewal must be answered within half of it)",
        ));
    }
    Ok(())
}

fn clean_host_id(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(HOST_ID_MAX)
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        s = format!("h{}", s.chars().take(HOST_ID_MAX - 1).collect::<String>());
    }
    s
}
