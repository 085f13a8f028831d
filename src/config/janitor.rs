//! The janitor's settings from the injected environment (SPEC section 5):
//! whether it runs at all (`CCCI_JANITOR`), which apps it may reap
//! (`CCCI_RUN_APP_RE`, checked against `CCCI_PROTECTED_APPS`), the abra
//! directory, how old a held lock may get (`CCCI_LOCK_MAX_AGE`), how long
//! finished run records are kept (`CCCI_RECORD_RETENTION`) and the lock
//! settings. Each is checked and named in its error (exit 2) before a
//! sweep touches anything.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use regex::Regex;

use super::locks::LockSettings;
use super::Env;
use crate::exit::Failure;

/// Default retention of finished run records.
pub(crate) const DEFAULT_RECORD_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);

/// Whether the janitor runs (`CCCI_JANITOR`, an on/off switch read as
/// every switch is, [`super::env_switch`]; unset: on).
pub(crate) fn enabled(env: &Env) -> Result<bool> {
    Ok(super::env_switch(env, "CCCI_JANITOR")?.unwrap_or(true))
}

/// The janitor's settings that come from the environment and its server,
/// validated.
#[derive(Clone, Debug)]
pub(crate) struct JanitorConfig {
    pub abra_home: PathBuf,
    pub server: String,
    pub gate: Gate,
    pub max_age: Duration,
    pub retention: Duration,
    pub locks: LockSettings,
}

/// Reads and checks the janitor's settings for a sweep of `server`, in
/// this order: the server, the gate, the abra directory (which must exist,
/// [`super::canonical_abra_home`]), the lock age limit, the retention and
/// the lock settings (`hostname` is the default host id).
pub(crate) fn settings(env: &Env, server: &str, hostname: &str) -> Result<JanitorConfig> {
    super::names::check_server(server)?;
    let suffix = env
        .get("CCCI_DOMAIN_SUFFIX")
        .filter(|v| !v.is_empty())
        .map(String::as_str)
        .unwrap_or(super::DEFAULT_DOMAIN_SUFFIX);
    let pattern = env
        .get("CCCI_RUN_APP_RE")
        .filter(|v| !v.is_empty())
        .cloned()
        .unwrap_or_else(|| super::default_run_app_re(suffix));
    let protected = parse_protected(
        env.get("CCCI_PROTECTED_APPS")
            .map(String::as_str)
            .unwrap_or(""),
    );
    let gate = Gate::new(&pattern, &protected)?;
    Ok(JanitorConfig {
        abra_home: super::canonical_abra_home(env)?,
        server: server.to_string(),
        gate,
        max_age: super::lock_max_age(env)?,
        retention: env_duration(env, "CCCI_RECORD_RETENTION", DEFAULT_RECORD_RETENTION)?,
        locks: super::locks::settings(env, hostname)?,
    })
}

/// RUN_APP_RE, checked against CCCI_PROTECTED_APPS before any sweep.
#[derive(Clone, Debug)]
pub struct Gate {
    pub re: Regex,
}

impl Gate {
    /// Compiles `pattern` and refuses it when it matches any protected app
    /// (exit 2): a gate that could select a long-lived app is never used.
    pub fn new(pattern: &str, protected: &[String]) -> Result<Gate> {
        let re = Regex::new(pattern).map_err(|e| {
            Failure::usage(format!(
                "invalid CCCI_RUN_APP_RE {pattern:?}: it does not compile: {e}"
            ))
        })?;
        if !anchored(pattern) {
            return Err(Failure::usage(format!(
                "invalid CCCI_RUN_APP_RE {pattern:?}: it must be anchored at both ends (start with ^ and end with $, around every alternative), so that it matches whole app domains only"
            )));
        }
        let hits: Vec<&String> = protected.iter().filter(|p| re.is_match(p)).collect();
        if !hits.is_empty() {
            return Err(Failure::usage(format!(
                "invalid CCCI_RUN_APP_RE {pattern:?}: it matches protected app(s) {}; the janitor refuses to start",
                hits.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(Gate { re })
    }

    pub fn matches(&self, domain: &str) -> bool {
        self.re.is_match(domain)
    }
}

/// Whether every match of `pattern` must start at the start of the text
/// and end at its end (`^...$`, `\A...\z`; not multi-line `(?m)^`), read
/// from the parsed pattern, so `^a|b$` is not anchored.
pub(crate) fn anchored(pattern: &str) -> bool {
    use regex_syntax::hir::Look;
    let Ok(hir) = regex_syntax::Parser::new().parse(pattern) else {
        return false;
    };
    let props = hir.properties();
    props.look_set_prefix().contains(Look::Start) && props.look_set_suffix().contains(Look::End)
}

/// Splits `CCCI_PROTECTED_APPS` (commas or whitespace).
pub(crate) fn parse_protected(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Parses a duration setting from the environment, naming it on error.
fn env_duration(env: &Env, key: &str, default: Duration) -> Result<Duration> {
    match env.get(key).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => crate::units::parse_duration(v)
            .map_err(|e| Failure::usage(format!("invalid {key}: {e}")))
            .context("bad janitor setting"),
    }
}
