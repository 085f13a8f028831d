//! The lock settings from the injected environment (SPEC sections 4 and
//! 11): the backend, this host's id and the swarm lease, each checked and
//! named in its error (exit 2) before anything is touched.

use std::time::Duration;

use anyhow::Result;

use super::Env;
use crate::exit::Failure;
use crate::lock::backend::{Backend, Lease, LockSettings, DEFAULT_LEASE, MARGIN_MIN};

fn bad(var: &str, value: &str, rule: &str) -> anyhow::Error {
    Failure::usage(format!("invalid {var} {value:?}: {rule}"))
}

fn duration_var(env: &Env, var: &str) -> Result<Option<Duration>> {
    match env.get(var).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => crate::units::parse_duration(v)
            .map(Some)
            .map_err(|e| Failure::usage(format!("{var}: {e}"))),
    }
}

/// The longest host id: it is a label value, and messages show it.
pub const HOST_ID_MAX: usize = 63;

/// Checks a host id: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 63 characters.
pub fn check_host_id(value: &str) -> Result<()> {
    const VAR: &str = "CCCI_HOST_ID";
    const RULE: &str = "host ids are 1 to 63 characters of A-Z, a-z, 0-9, `.`, `_` and `-`, starting with a letter or digit";
    let ok = !value.is_empty()
        && value.len() <= HOST_ID_MAX
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(bad(VAR, value, RULE))
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
    let docker_host = super::tools(env).docker_host;
    Ok(LockSettings {
        backend,
        host_id,
        lease,
        docker_host,
    })
}

/// The lock settings of the process environment.
pub fn settings_from_process() -> Result<LockSettings> {
    settings(&super::process_env(), &crate::sys::procfs::hostname())
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
