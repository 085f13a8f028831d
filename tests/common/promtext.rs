//! A strict checker of the Prometheus text exposition format (0.0.4), for
//! the metrics file cc-ci-run writes: every line is a HELP, a TYPE or a
//! sample; HELP and TYPE at most once per family and before its samples;
//! a family's samples together; names and label names as the format allows;
//! label values with only `\\`, `\"` and `\n` escapes; no duplicate series;
//! values that parse; counters not negative; a final newline. Returns the
//! samples as (`name{labels}`, value).

use std::collections::{BTreeMap, HashSet};

fn is_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
    chars.next().is_some_and(ok_first)
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

fn value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// The family a sample belongs to, given the declared types.
fn family_of(name: &str, types: &BTreeMap<String, String>) -> String {
    for suffix in ["_sum", "_count", "_bucket"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if matches!(
                types.get(base).map(String::as_str),
                Some("summary" | "histogram")
            ) {
                return base.to_string();
            }
        }
    }
    name.to_string()
}

type Labels = Vec<(String, String)>;

/// Parses `{a="x",b="y"}` at the start of `s`; returns the labels and the rest.
fn labels(s: &str) -> Result<(Labels, &str), String> {
    let mut out = Vec::new();
    let mut rest = s.strip_prefix('{').ok_or("no {")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((out, r));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !is_name(name, false) {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut v = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => v.push('\\'),
                    Some((_, '"')) => v.push('"'),
                    Some((_, 'n')) => v.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((_, '\n')) => return Err("raw newline in a label value".into()),
                Some((_, c)) => v.push(c),
            }
        };
        if out.iter().any(|(n, _)| n == name) {
            return Err(format!("label {name} twice"));
        }
        out.push((name.to_string(), v));
        rest = &rest[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err("labels not separated by ,".into());
        }
    }
}

pub fn check(text: &str) -> Result<Vec<(String, f64)>, String> {
    if !text.ends_with('\n') {
        return Err("no final newline".into());
    }
    let mut helps = HashSet::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut seen_samples: HashSet<String> = HashSet::new();
    let mut finished_families: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let err = |m: String| format!("line {}: {m}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest
                .split_once(' ')
                .ok_or_else(|| err("HELP without text".into()))?;
            if !is_name(name, true) || !helps.insert(name.to_string()) {
                return Err(err("bad or repeated HELP".into()));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| err("TYPE without type".into()))?;
            if !["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind) {
                return Err(err(format!("unknown type {kind}")));
            }
            if !is_name(name, true) || types.insert(name.into(), kind.into()).is_some() {
                return Err(err("bad or repeated TYPE".into()));
            }
            if finished_families.contains(name) || current.as_deref() == Some(name) {
                return Err(err("TYPE after the family's samples".into()));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            return Err(err("blank line".into()));
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| err("no value".into()))?;
        let name = &line[..name_end];
        if !is_name(name, true) {
            return Err(err("bad metric name".into()));
        }
        let (labs, rest) = if line[name_end..].starts_with('{') {
            labels(&line[name_end..]).map_err(err)?
        } else {
            (Vec::new(), &line[name_end..])
        };
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| err("no space before value".into()))?;
        let mut parts = rest.split(' ');
        let v = parts
            .next()
            .and_then(value)
            .ok_or_else(|| err("value does not parse".into()))?;
        if let Some(ts) = parts.next() {
            ts.parse::<i64>().map_err(|_| err("bad timestamp".into()))?;
        }
        if parts.next().is_some() {
            return Err(err("trailing fields".into()));
        }
        let family = family_of(name, &types);
        if current.as_deref() != Some(family.as_str()) {
            if finished_families.contains(&family) {
                return Err(err("family's samples are not together".into()));
            }
            if let Some(c) = current.take() {
                finished_families.insert(c);
            }
            current = Some(family.clone());
        }
        if types.get(&family).map(String::as_str) == Some("counter") && (v.is_nan() || v < 0.0) {
            return Err(err("negative or NaN counter".into()));
        }
        let mut sorted = labs.clone();
        sorted.sort();
        let key = format!(
            "{name}{{{}}}",
            sorted
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        if !seen_samples.insert(key.clone()) {
            return Err(err("duplicate series".into()));
        }
        out.push((key, v));
    }
    Ok(out)
}

/// The value of one series (`name{labels}` with labels sorted), if present.
pub fn get(samples: &[(String, f64)], key: &str) -> Option<f64> {
    samples.iter().find(|(k, _)| k == key).map(|s| s.1)
}

/// `promtool check metrics` on `text`, where Debian's prometheus package
/// is installed; `.ci/run` installs it and sets `CCCI_DEV_REQUIRE_PROMTOOL`,
/// so there a missing promtool fails instead of passing unchecked. The
/// strict [`check`] runs everywhere.
pub fn promtool_accepts(text: &str) {
    use std::io::Write;
    let spawned = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = spawned else {
        assert!(
            std::env::var_os("CCCI_DEV_REQUIRE_PROMTOOL").is_none(),
            "promtool is required (CCCI_DEV_REQUIRE_PROMTOOL) but does not run"
        );
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
