//! A test file's header: the per-test metadata of SPEC section 6.
//!
//! Pure: [`parse_header`] takes the file's text and returns its [`Meta`] or
//! the first problem with the line it is on; the caller adds the file name.
//! A malformed header is an error, never a silent default: a typo such as
//! `# Timeout: 5m` or `# timout: 5m` would otherwise run a test with a
//! limit its author did not mean.
//!
//! The header is the run of comment lines (`#` or `//`) at the top of the
//! file, after an optional `#!` line; blank lines inside it are allowed and
//! the first other line ends it. In the header, a comment whose text starts
//! with a word directly followed by `:` and a space (or the end of the line)
//! is a `key: value` line and the key must be one of [`KEYS`], written in
//! lower case; any other comment text (prose, `-*- mode: sh -*-`,
//! `shellcheck disable=...`) is left alone.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::units::{parse_duration, parse_size};

/// The keys a header may set.
pub(crate) const KEYS: [&str; 8] = [
    "level",
    "tier",
    "tags",
    "timeout",
    "memory",
    "priority",
    "depends-on",
    "retries",
];

/// The most reruns a test may ask for (header or `--retries`; the rule
/// lives with the option, which the runner's modules build on).
pub use crate::cli::MAX_RETRIES;

/// A test's tier lives below the run record, which keeps the tiers a run
/// tested; the header names it here.
pub use crate::tier::Tier;

/// How wide a test reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Unit,
    Integration,
    System,
}

impl Level {
    pub(crate) const ALL: [Level; 3] = [Level::Unit, Level::Integration, Level::System];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Level::Unit => "unit",
            Level::Integration => "integration",
            Level::System => "system",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.as_str() == text)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A test's metadata. Unset fields take the runner's defaults (no level,
/// every tier, the `--test-timeout` and `--test-memory` flags, priority 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub level: Option<Level>,
    /// Empty: every tier.
    pub tiers: Vec<Tier>,
    pub tags: Vec<String>,
    pub timeout: Option<Duration>,
    /// Address-space limit in bytes.
    pub memory: Option<u64>,
    pub priority: i64,
    /// Test names (file names without directory).
    pub depends_on: Vec<String>,
    /// Reruns after a failure; unset: `--retries`.
    pub retries: Option<u32>,
}

impl Meta {
    /// Whether the test runs in `tier` (no `tier` key: in every tier).
    pub fn runs_in(&self, tier: Tier) -> bool {
        self.tiers.is_empty() || self.tiers.contains(&tier)
    }

    pub(crate) fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

/// The first problem in a header: its 1-based line and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for HeaderError {}

/// Parses the header of a test file's text.
pub fn parse_header(text: &str) -> Result<Meta, HeaderError> {
    let mut meta = Meta::default();
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if line == 1 && trimmed.starts_with("#!") {
            continue;
        }
        let body = if let Some(rest) = trimmed.strip_prefix("//") {
            rest
        } else if let Some(rest) = trimmed.strip_prefix('#') {
            rest
        } else if trimmed.is_empty() {
            continue;
        } else {
            break;
        };
        let Some((key, value)) = split_key(body.trim()) else {
            continue;
        };
        let err = |message: String| HeaderError { line, message };
        let known = KEYS.iter().find(|k| **k == key);
        let Some(&key) = known else {
            let hint = match KEYS.iter().find(|k| k.eq_ignore_ascii_case(key)) {
                Some(k) => format!("keys are lower-case: write `{k}`"),
                None => format!("known keys are {}", KEYS.join(", ")),
            };
            return Err(err(format!("unknown header key `{key}` ({hint})")));
        };
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
            return Err(err(format!(
                "header key `{key}` is set twice (first on line {first})"
            )));
        }
        seen.push((key, line));
        if value.is_empty() {
            return Err(err(format!("header key `{key}` has no value")));
        }
        set(&mut meta, key, value).map_err(err)?;
    }
    Ok(meta)
}

/// `word: value` or `word:` → (word, value). The word starts with a letter
/// and holds letters, digits, `-` and `_`; the colon is followed by
/// whitespace or nothing (so `http://x` is not a key).
fn split_key(body: &str) -> Option<(&str, &str)> {
    let end = body.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))?;
    let (word, rest) = body.split_at(end);
    if word.is_empty() || !word.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let after = rest.strip_prefix(':')?;
    if !(after.is_empty() || after.starts_with(char::is_whitespace)) {
        return None;
    }
    Some((word, after.trim()))
}

fn set(meta: &mut Meta, key: &str, value: &str) -> Result<(), String> {
    match key {
        "level" => {
            meta.level = Some(Level::parse(value).ok_or_else(|| {
                format!("level `{value}` is not one of unit, integration, system")
            })?);
        }
        "tier" => {
            for item in list(key, value)? {
                let tier = Tier::parse(item)
                    .ok_or_else(|| format!("tier `{item}` is not one of {}", Tier::NAMES))?;
                if !meta.tiers.contains(&tier) {
                    meta.tiers.push(tier);
                }
            }
        }
        "tags" => {
            for item in list(key, value)? {
                if !crate::config::names::is_tag(item) {
                    return Err(format!("tag `{item}` {}", crate::config::names::TAG_RULE));
                }
                if !meta.has_tag(item) {
                    meta.tags.push(item.to_string());
                }
            }
        }
        "timeout" => {
            let d = parse_duration(value).map_err(|e| format!("timeout: {e}"))?;
            if d.is_zero() {
                return Err("timeout must be longer than 0".into());
            }
            meta.timeout = Some(d);
        }
        "memory" => {
            let n = parse_size(value).map_err(|e| format!("memory: {e}"))?;
            if n == 0 {
                return Err("memory must be more than 0 bytes".into());
            }
            meta.memory = Some(n);
        }
        "priority" => {
            meta.priority = value
                .parse()
                .map_err(|_| format!("priority `{value}` is not a whole number"))?;
        }
        "depends-on" => {
            for item in list(key, value)? {
                if item.contains('/') {
                    return Err(format!(
                        "depends-on `{item}`: name a test by its file name, without directory"
                    ));
                }
                if !meta.depends_on.iter().any(|d| d == item) {
                    meta.depends_on.push(item.to_string());
                }
            }
        }
        "retries" => {
            let n: u32 = value
                .parse()
                .map_err(|_| format!("retries `{value}` is not a whole number from 0"))?;
            if n > MAX_RETRIES {
                return Err(format!("retries {n} is more than {MAX_RETRIES}"));
            }
            meta.retries = Some(n);
        }
        other => return Err(format!("unknown header key `{other}`")),
    }
    Ok(())
}

/// A comma-separated list with no empty item.
fn list<'a>(key: &str, value: &'a str) -> Result<Vec<&'a str>, String> {
    value
        .split(',')
        .map(str::trim)
        .map(|item| {
            if item.is_empty() {
                Err(format!("{key}: empty item in `{value}`"))
            } else if item.contains(char::is_whitespace) {
                Err(format!(
                    "{key}: `{item}` holds whitespace (items are comma-separated)"
                ))
            } else {
                Ok(item)
            }
        })
        .collect()
}
