//! Per-recipe settings (SPEC section 3b): `ccci.toml` beside the CI
//! repository's tests of a recipe (`$CCCI_CI_TESTS/<recipe>/ccci.toml`) and
//! in the recipe's own `tests/ccci.toml` at the tested ref. The CI
//! repository's file wins key by key (a table such as `env` is one key: the
//! CI file's table replaces the recipe's whole).
//!
//! Every key is typed and validated when the file is read, before anything
//! is touched: an unknown key, a key of the wrong type or a bad value is a
//! usage error (exit 2) naming the file, the line and the key (and, for an
//! unknown key, the closest known one).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::config::Base;
use crate::exit::Failure;

/// The file name, in both places.
pub const FILE: &str = "ccci.toml";

/// Every key a settings file may hold.
pub const KEYS: &[&str] = &[
    "converge_timeout",
    "base",
    "env",
    "upgrade_env",
    "ready_probe",
    "ready_timeout",
    "floor",
    "not_applicable",
    "overlays",
];

/// The tiers `not_applicable` may name.
pub const SKIPPABLE_TIERS: &[&str] = &["upgrade", "backup"];

/// Where a value came from: the file and the line of its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One value and its origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set<T> {
    pub value: T,
    pub from: Origin,
}

/// The ready probe: what the floor asks instead of the app's URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// `http PATH [STATUS...]` (no status: any 2xx or 3xx).
    Http { path: String, statuses: Vec<u16> },
    /// `tcp PORT`
    Tcp { port: u16 },
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Http { path, statuses } => {
                write!(f, "http {path}")?;
                for s in statuses {
                    write!(f, " {s}")?;
                }
                Ok(())
            }
            Probe::Tcp { port } => write!(f, "tcp {port}"),
        }
    }
}

/// Variables written into the app's env file, in file order.
pub type Vars = Vec<(String, String)>;

/// A recipe's settings; None: the key is not set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub converge_timeout: Option<Set<Duration>>,
    pub base: Option<Set<Base>>,
    pub env: Option<Set<Vars>>,
    pub upgrade_env: Option<Set<Vars>>,
    pub ready_probe: Option<Set<Probe>>,
    pub ready_timeout: Option<Set<Duration>>,
    pub floor: Option<Set<bool>>,
    /// (tier, reason) pairs; tiers are `upgrade` or `backup`.
    pub not_applicable: Option<Set<Vec<(String, String)>>>,
    /// CI-only compose files, as absolute paths (resolved against the
    /// directory of the file that names them; each exists).
    pub overlays: Option<Set<Vec<PathBuf>>>,
}

/// The 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.get(..at)
        .map_or(1, |s| s.bytes().filter(|&b| b == b'\n').count() + 1)
}

/// Edit distance (Levenshtein) between two short keys.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The known key closest to `key`.
pub fn closest<'a>(key: &str, known: &[&'a str]) -> &'a str {
    known
        .iter()
        .copied()
        .min_by_key(|k| distance(key, k))
        .unwrap_or("")
}

/// A reader of one file: its path and text, for error positions.
struct Reader<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Reader<'_> {
    fn origin(&self, span: std::ops::Range<usize>) -> Origin {
        Origin {
            file: self.file.to_path_buf(),
            line: line_of(self.text, span.start),
        }
    }

    fn bad(&self, span: std::ops::Range<usize>, key: &str, rule: &str) -> anyhow::Error {
        Failure::usage(format!("{}: key {key}: {rule}", self.origin(span)))
    }

    fn unknown(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        known: &[&str],
        what: &str,
    ) -> anyhow::Error {
        Failure::usage(format!(
            "{}: unknown {what} {key:?}: did you mean {:?}? (known: {})",
            self.origin(span),
            closest(key, known),
            known.join(", ")
        ))
    }

    fn string<'v>(&self, key: &str, v: &'v Spanned<DeValue<'_>>) -> Result<&'v str> {
        match v.get_ref() {
            DeValue::String(s) => Ok(s.as_ref()),
            other => Err(self.bad(
                v.span(),
                key,
                &format!("must be a string, not {}", type_name(other)),
            )),
        }
    }

    /// A positive duration: whole seconds as an integer, or a string
    /// such as `15m` or `900s`.
    fn duration(&self, key: &str, v: &Spanned<DeValue<'_>>) -> Result<Duration> {
        const RULE: &str =
            "must be a positive duration: whole seconds (900) or a string such as \"15m\", \"900s\", \"1h\"";
        let d = match v.get_ref() {
            DeValue::Integer(i) if i.radix() == 10 => i
                .as_str()
                .replace('_', "")
                .parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| self.bad(v.span(), key, RULE))?,
            DeValue::String(s) => crate::units::parse_duration(s)
                .map_err(|why| self.bad(v.span(), key, &format!("{RULE} ({why})")))?,
            _ => return Err(self.bad(v.span(), key, RULE)),
        };
        if d.is_zero() {
            return Err(self.bad(v.span(), key, RULE));
        }
        Ok(d)
    }

    /// A table of environment variables: names as abra's env files allow,
    /// values strings on one line.
    fn vars(&self, key: &str, v: &Spanned<DeValue<'_>>) -> Result<Vars> {
        let DeValue::Table(t) = v.get_ref() else {
            return Err(self.bad(
                v.span(),
                key,
                &format!(
                    "must be a table of variables (KEY = \"value\"), not {}",
                    type_name(v.get_ref())
                ),
            ));
        };
        let mut out = Vars::new();
        for (name, value) in t {
            let n = name.get_ref().as_ref();
            let ok = n
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok {
                return Err(self.bad(
                    name.span(),
                    &format!("{key}.{n}"),
                    "a variable name is letters, digits and '_', not starting with a digit",
                ));
            }
            let what = format!("{key}.{n}");
            let s = self.string(&what, value)?;
            if s.contains(['\n', '\r', '\0']) || s.contains('\'') {
                return Err(self.bad(
                    value.span(),
                    &what,
                    "a value is one line without single quotes (it is written into the app's env file single-quoted, which abra reads literally)",
                ));
            }
            out.push((n.to_string(), s.to_string()));
        }
        Ok(out)
    }
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Parses `ready_probe`'s text.
pub fn parse_probe(text: &str) -> Result<Probe, String> {
    const RULE: &str = "must be \"http PATH [STATUS...]\" (PATH starting with '/', statuses 100 to 599) or \"tcp PORT\" (1 to 65535)";
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["http", path, statuses @ ..]
            if path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            let mut codes = Vec::new();
            for s in statuses {
                match s.parse::<u16>() {
                    Ok(c) if (100..=599).contains(&c) && s.len() == 3 => codes.push(c),
                    _ => return Err(format!("{RULE}; {s:?} is not a status")),
                }
            }
            Ok(Probe::Http {
                path: path.to_string(),
                statuses: codes,
            })
        }
        ["tcp", port] => match port.parse::<u16>() {
            Ok(p) if p > 0 && !port.starts_with('0') => Ok(Probe::Tcp { port: p }),
            _ => Err(format!("{RULE}; {port:?} is not a port")),
        },
        _ => Err(RULE.to_string()),
    }
}

/// Reads one settings file's text (`file` names it in errors; overlays
/// resolve against its directory).
pub fn parse(file: &Path, text: &str) -> Result<Settings> {
    let r = Reader { file, text };
    let doc = DeTable::parse(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(text, s.start));
        Failure::usage(format!(
            "{}:{line}: not valid TOML: {}",
            file.display(),
            e.message().trim_end()
        ))
    })?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut s = Settings::default();
    for (key, v) in doc.get_ref() {
        let k = key.get_ref().as_ref();
        let from = r.origin(key.span());
        match k {
            "converge_timeout" => {
                s.converge_timeout = Some(Set {
                    value: r.duration(k, v)?,
                    from,
                })
            }
            "ready_timeout" => {
                s.ready_timeout = Some(Set {
                    value: r.duration(k, v)?,
                    from,
                })
            }
            "base" => {
                let text = r.string(k, v)?;
                let value = Base::parse("base", text).map_err(|_| {
                    r.bad(
                        v.span(),
                        k,
                        "must be \"latest-release\", \"last-green\" or a release tag (a git ref)",
                    )
                })?;
                s.base = Some(Set { value, from });
            }
            "env" => {
                s.env = Some(Set {
                    value: r.vars(k, v)?,
                    from,
                })
            }
            "upgrade_env" => {
                s.upgrade_env = Some(Set {
                    value: r.vars(k, v)?,
                    from,
                })
            }
            "ready_probe" => {
                let text = r.string(k, v)?;
                let value = parse_probe(text).map_err(|rule| r.bad(v.span(), k, &rule))?;
                s.ready_probe = Some(Set { value, from });
            }
            "floor" => match v.get_ref() {
                DeValue::Boolean(b) => s.floor = Some(Set { value: *b, from }),
                other => {
                    return Err(r.bad(
                        v.span(),
                        k,
                        &format!("must be true or false, not {}", type_name(other)),
                    ))
                }
            },
            "not_applicable" => {
                let DeValue::Table(t) = v.get_ref() else {
                    return Err(r.bad(
                        v.span(),
                        k,
                        "must be a table of tiers and reasons (upgrade = \"why\", backup = \"why\")",
                    ));
                };
                let mut tiers = Vec::new();
                for (tier, reason) in t {
                    let name = tier.get_ref().as_ref();
                    if !SKIPPABLE_TIERS.contains(&name) {
                        return Err(r.unknown(
                            tier.span(),
                            name,
                            SKIPPABLE_TIERS,
                            "tier in not_applicable",
                        ));
                    }
                    let what = format!("{k}.{name}");
                    let why = r.string(&what, reason)?;
                    if why.trim().is_empty() || why.contains(['\n', '\r']) {
                        return Err(r.bad(
                            reason.span(),
                            &what,
                            "the reason is one non-empty line (the summary shows it)",
                        ));
                    }
                    tiers.push((name.to_string(), why.trim().to_string()));
                }
                s.not_applicable = Some(Set { value: tiers, from });
            }
            "overlays" => {
                let DeValue::Array(items) = v.get_ref() else {
                    return Err(r.bad(
                        v.span(),
                        k,
                        "must be an array of compose file paths (relative to this file's directory)",
                    ));
                };
                let mut paths: Vec<PathBuf> = Vec::new();
                for item in items.iter() {
                    let p = r.string(k, item)?;
                    let rel = Path::new(p);
                    let ok = !p.is_empty()
                        && rel.is_relative()
                        && rel
                            .components()
                            .all(|c| matches!(c, std::path::Component::Normal(_)))
                        && (p.ends_with(".yml") || p.ends_with(".yaml"))
                        && p.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b));
                    if !ok {
                        return Err(r.bad(
                            item.span(),
                            k,
                            &format!("{p:?} must be a relative path below this file's directory (no '..'; A-Z, a-z, 0-9, '.', '_', '-', '/') ending in .yml or .yaml"),
                        ));
                    }
                    let full = dir.join(rel);
                    if !full.is_file() {
                        return Err(r.bad(
                            item.span(),
                            k,
                            &format!("{} does not exist (or is not a file)", full.display()),
                        ));
                    }
                    let name = rel.file_name();
                    if paths.iter().any(|q| q.file_name() == name) {
                        return Err(r.bad(
                            item.span(),
                            k,
                            &format!("{p:?}: two overlays share a file name (each is copied into the run's checkout by its name)"),
                        ));
                    }
                    paths.push(full);
                }
                s.overlays = Some(Set { value: paths, from });
            }
            other => return Err(r.unknown(key.span(), other, KEYS, "key")),
        }
    }
    Ok(s)
}

/// Reads a settings file; None when there is none.
pub fn load(file: &Path) -> Result<Option<Settings>> {
    match std::fs::read(file) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| {
                Failure::usage(format!("{}: not UTF-8 (TOML is UTF-8)", file.display()))
            })?;
            parse(file, &text).map(Some)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Failure::usage(format!(
            "{}: cannot be read: {e}",
            file.display()
        ))),
    }
}

/// The CI repository's settings file of `recipe`.
pub fn ci_file(ci_tests_dir: &Path, recipe: &str) -> PathBuf {
    ci_tests_dir.join(recipe).join(FILE)
}

/// `over` (the CI repository's) wins key by key over `under` (the recipe's).
pub fn merge(over: Settings, under: Settings) -> Settings {
    Settings {
        converge_timeout: over.converge_timeout.or(under.converge_timeout),
        base: over.base.or(under.base),
        env: over.env.or(under.env),
        upgrade_env: over.upgrade_env.or(under.upgrade_env),
        ready_probe: over.ready_probe.or(under.ready_probe),
        ready_timeout: over.ready_timeout.or(under.ready_timeout),
        floor: over.floor.or(under.floor),
        not_applicable: over.not_applicable.or(under.not_applicable),
        overlays: over.overlays.or(under.overlays),
    }
}

/// The effective settings: the CI repository's file over the recipe's own
/// (`recipe_file`: its `tests/ccci.toml` at the tested ref, if any).
pub fn effective(
    ci_tests_dir: &Path,
    recipe: &str,
    recipe_file: Option<&Path>,
) -> Result<Settings> {
    let ci = load(&ci_file(ci_tests_dir, recipe))?.unwrap_or_default();
    let own = match recipe_file {
        Some(f) => load(f)?.unwrap_or_default(),
        None => Settings::default(),
    };
    Ok(merge(ci, own))
}

impl Settings {
    /// Why `tier` does not apply, when the settings say so.
    pub fn not_applicable(&self, tier: &str) -> Option<&str> {
        self.not_applicable
            .as_ref()?
            .value
            .iter()
            .find(|(t, _)| t == tier)
            .map(|(_, why)| why.as_str())
    }

    /// One line per key: `key = value    (from FILE:LINE)`, unset keys
    /// with their default.
    pub fn lines(&self) -> Vec<String> {
        fn from<T>(s: &Option<Set<T>>) -> String {
            s.as_ref()
                .map_or("default".to_string(), |s| s.from.to_string())
        }
        fn vars(v: &Vars) -> String {
            let items: Vec<String> = v.iter().map(|(k, v)| format!("{k} = {v:?}")).collect();
            format!("{{ {} }}", items.join(", "))
        }
        let rows: Vec<(&str, String, String)> =
            vec![
                (
                    "converge_timeout",
                    self.converge_timeout.as_ref().map_or(
                        "unset (--converge-timeout, else the recipe's timeout label, else 5m)"
                            .to_string(),
                        |s| crate::units::human(s.value),
                    ),
                    from(&self.converge_timeout),
                ),
                (
                    "base",
                    self.base.as_ref().map_or(
                        "unset (--base, else latest-release)".to_string(),
                        |s| match &s.value {
                            Base::LatestRelease => "latest-release".to_string(),
                            Base::LastGreen => "last-green".to_string(),
                            Base::Version(v) => v.clone(),
                        },
                    ),
                    from(&self.base),
                ),
                (
                    "env",
                    self.env
                        .as_ref()
                        .map_or("{}".to_string(), |s| vars(&s.value)),
                    from(&self.env),
                ),
                (
                    "upgrade_env",
                    self.upgrade_env
                        .as_ref()
                        .map_or("{}".to_string(), |s| vars(&s.value)),
                    from(&self.upgrade_env),
                ),
                (
                    "ready_probe",
                    self.ready_probe
                        .as_ref()
                        .map_or("unset (the app's URL)".to_string(), |s| s.value.to_string()),
                    from(&self.ready_probe),
                ),
                (
                    "ready_timeout",
                    self.ready_timeout
                        .as_ref()
                        .map_or("unset".to_string(), |s| crate::units::human(s.value)),
                    from(&self.ready_timeout),
                ),
                (
                    "floor",
                    self.floor
                        .as_ref()
                        .map_or("true".to_string(), |s| s.value.to_string()),
                    from(&self.floor),
                ),
                (
                    "not_applicable",
                    self.not_applicable.as_ref().map_or("{}".to_string(), |s| {
                        let items: Vec<String> = s
                            .value
                            .iter()
                            .map(|(t, why)| format!("{t} = {why:?}"))
                            .collect();
                        format!("{{ {} }}", items.join(", "))
                    }),
                    from(&self.not_applicable),
                ),
                (
                    "overlays",
                    self.overlays.as_ref().map_or("[]".to_string(), |s| {
                        let items: Vec<String> = s
                            .value
                            .iter()
                            .map(|p| format!("{:?}", p.display().to_string()))
                            .collect();
                        format!("[{}]", items.join(", "))
                    }),
                    from(&self.overlays),
                ),
            ];
        rows.into_iter()
            .map(|(k, v, f)| format!("{k} = {v}  # from {f}"))
            .collect()
    }
}
