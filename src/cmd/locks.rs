//! `cc-ci-run locks`: what is held, by whom, for how long, from the
//! kernel's view ([`crate::lock::flock::holder`], through
//! [`crate::lock::report`]) and the owner records, then what the
//! app-domain lock's backend lists of its own (the swarm's lease
//! objects). It never takes a lock: probing would make a run that tries
//! its run lock at that moment see it busy and exit 75.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::LocksArgs;
use crate::exit::{self};
use crate::lock::backend::SwarmLockReport;
use crate::lock::report::{collect, LockReport, State};
use crate::say;
use crate::table::{self, Align};

#[derive(Debug, Serialize)]
struct LocksJson<'a> {
    max_age_secs: u64,
    /// `flock` or `swarm`: which authority arbitrates app-domain locks.
    backend: &'static str,
    locks: &'a [LockReport],
    /// With the swarm backend: every lock object on the swarm (null with flock).
    swarm_locks: Option<&'a [SwarmLockReport]>,
}

/// The human listing of the swarm locks (pure).
pub fn swarm_table(reports: &[SwarmLockReport]) -> String {
    if reports.is_empty() {
        return "no swarm locks\n".to_string();
    }
    let mut rows = vec![["DOMAIN", "STATE", "ID", "EXPIRES", "HOLDER"]
        .map(String::from)
        .to_vec()];
    for r in reports {
        let expires = r.expires_in_secs.map_or("-".to_string(), |s| {
            if s >= 0 {
                format!("in {s}s")
            } else {
                format!("{}s ago", -s)
            }
        });
        let mut holder = match (&r.run_id, &r.host, r.pid) {
            (Some(run), Some(host), Some(pid)) => format!(
                "run {run} (pid {pid} on host {host}, since {}, {} renewal(s))",
                r.started.as_deref().unwrap_or("?"),
                r.renewals.unwrap_or(0)
            ),
            _ => "not a cc-ci-run lease (no lease labels)".to_string(),
        };
        if r.over_max_age {
            holder.push_str("  [held longer than CCCI_LOCK_MAX_AGE]");
        }
        rows.push(vec![
            r.domain.clone(),
            r.state.to_string(),
            r.id.clone(),
            expires,
            holder,
        ]);
    }
    table::render_aligned(
        &rows,
        &[Align::Left, Align::Left, Align::Left, Align::Right],
    )
}

pub(crate) fn locks(state_dir: &Path, args: LocksArgs) -> Result<i32> {
    crate::log::set_tag("locks");
    let max_age = crate::config::lock_max_age(&crate::config::process_env())?;
    let locks = crate::lock::settings_from_process()?.open(state_dir);
    let reports = collect(state_dir, max_age)?;
    let swarm = locks.list(max_age)?;
    if args.json {
        let json = serde_json::to_string_pretty(&LocksJson {
            max_age_secs: max_age.as_secs(),
            backend: locks.backend().as_str(),
            locks: &reports,
            swarm_locks: swarm.as_deref(),
        })
        .context("failed to encode the lock list")?;
        writeln!(std::io::stdout().lock(), "{json}").context("failed to write the lock list")?;
    } else {
        let mut text = table(&reports);
        if let Some(sw) = &swarm {
            text.push_str(&swarm_table(sw));
        }
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .context("failed to write the lock list")?;
    }
    for r in swarm.iter().flatten().filter(|r| r.over_max_age) {
        say!(
            "warning: swarm lock `{}` held for {} by run {} on host {}, longer than CCCI_LOCK_MAX_AGE ({})",
            r.domain,
            crate::units::human(Duration::from_secs(r.age_secs.unwrap_or(0))),
            r.run_id.as_deref().unwrap_or("?"),
            r.host.as_deref().unwrap_or("?"),
            crate::units::human(max_age)
        );
    }
    for r in reports.iter().filter(|r| r.over_max_age) {
        say!(
            "warning: {} lock `{}` held for {} by pid {}, longer than CCCI_LOCK_MAX_AGE ({})",
            r.kind.as_str(),
            r.name,
            crate::units::human(Duration::from_secs(r.age_secs.unwrap_or(0))),
            r.holder_pid.map_or("?".to_string(), |p| p.to_string()),
            crate::units::human(max_age)
        );
    }
    Ok(exit::OK)
}

/// The human listing of `locks`, one line per lock (pure).
pub fn table(reports: &[LockReport]) -> String {
    if reports.is_empty() {
        return "no locks\n".to_string();
    }
    let mut rows = vec![["KIND", "NAME", "STATE", "PID", "AGE", "OWNER"]
        .map(String::from)
        .to_vec()];
    for r in reports {
        let pid = table::dash(r.holder_pid.map(|p| p.to_string()));
        let age = table::dash(
            r.age_secs
                .map(|a| crate::units::human(Duration::from_secs(a))),
        );
        let mut owner = match (&r.owner, r.state, r.owner_matches) {
            (None, State::Held, _) => "no owner record".to_string(),
            (None, State::Free, _) => "-".to_string(),
            (Some(o), State::Held, true) => o.describe(),
            (Some(o), State::Held, false) => format!("stale record: {}", o.describe()),
            (Some(o), State::Free, _) => format!("left by dead holder: {}", o.describe()),
        };
        if r.over_max_age {
            owner.push_str("  [held longer than CCCI_LOCK_MAX_AGE]");
        }
        let state = match r.state {
            State::Held => "held",
            State::Free => "free",
        };
        rows.push(vec![
            r.kind.as_str().to_string(),
            r.name.clone(),
            state.to_string(),
            pid,
            age,
            owner,
        ]);
    }
    let right = [
        Align::Left,
        Align::Left,
        Align::Left,
        Align::Right,
        Align::Right,
    ];
    table::render_aligned(&rows, &right)
}
