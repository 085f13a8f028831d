//! The lock object's name and labels (the lease), and `docker config
//! inspect` read as lock objects: pure, no engine.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::lock::backend::Lease;
use crate::lock::{Kind, OwnerRecord};

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
            role: crate::lock::Role::Run,
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
