//! What cc-ci-run reads of a recipe (pure): `.env.sample`, the compose
//! files it names, the static checks of SPEC section 3 step 4, whether the
//! backup/restore tier runs, and which release is the base of the install
//! tier.
//!
//! Compose values are read as the engine will see them (SPEC section 3
//! step 8): interpolated (`interpolate`) with the values docker gets. The
//! compose files keep their raw text here; the static checks interpolate
//! images with `.env.sample`'s values (no app exists yet), and the backup
//! decision interpolates the `backupbot.backup` labels with the app's env
//! file once `app new` has written it, since that file, not the raw text,
//! is what `abra app deploy` hands to docker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::exit::{Failure, TESTS_FAILED};
use crate::run::interpolate::{self, Interpolated};

/// Parses an env file: `KEY=value` lines, `#` comments, optional quotes.
pub fn parse_env(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or_else(|| v.split(" #").next().unwrap_or(v).trim());
            out.insert(k.trim().to_string(), v.to_string());
        }
    }
    out
}

/// Sets `key=value` in env-file text, replacing an existing line or appending.
pub fn set_env(text: &str, key: &str, value: &str) -> String {
    let mut found = false;
    let mut out: Vec<String> = text
        .lines()
        .map(|l| {
            let t = l.trim_start();
            if !found && t.split_once('=').is_some_and(|(k, _)| k.trim() == key) {
                found = true;
                format!("{key}={value}")
            } else {
                l.to_string()
            }
        })
        .collect();
    if !found {
        out.push(format!("{key}={value}"));
    }
    out.join("\n") + "\n"
}

/// The values `abra app deploy` gives docker to interpolate the compose
/// files with: the app's env file and `STACK_NAME` (abra sets it; a
/// `STACK_NAME` in the env file is the stack name abra uses, so it wins).
pub fn deploy_vars(env_file: &str, stack: &str) -> BTreeMap<String, String> {
    let mut vars = parse_env(env_file);
    vars.entry("STACK_NAME".to_string())
        .or_insert_with(|| stack.to_string());
    vars
}

/// One service of a compose file, as written (not interpolated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub image: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// What the static checks learned of a recipe.
#[derive(Clone, Debug, Default)]
pub(crate) struct RecipeInfo {
    pub compose_files: Vec<PathBuf>,
    /// The services as written: later decisions interpolate them with the
    /// values of their moment (the backup tier: the app's env file).
    pub services: Vec<Service>,
    /// Every service's image interpolated with `.env.sample`'s values
    /// (checked pinned): what the prepare phase pulls.
    pub sampled_images: Vec<String>,
}

impl RecipeInfo {
    pub(crate) fn images(&self) -> Vec<String> {
        let mut v = self.sampled_images.clone();
        v.sort();
        v.dedup();
        v
    }
}

fn check_failed(file: &Path, rule: &str) -> anyhow::Error {
    Failure::with_code(
        TESTS_FAILED,
        format!("static check failed: {}: {rule}", file.display()),
    )
}

/// Labels as compose writes them: a list of `k=v` or a map.
fn labels_of(v: Option<&serde_norway::Value>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match v {
        Some(serde_norway::Value::Sequence(items)) => {
            for item in items {
                if let Some(s) = item.as_str() {
                    let (k, val) = s.split_once('=').unwrap_or((s, ""));
                    out.insert(k.to_string(), val.to_string());
                }
            }
        }
        Some(serde_norway::Value::Mapping(m)) => {
            for (k, val) in m {
                let key = k.as_str().unwrap_or_default().to_string();
                let value = match val {
                    serde_norway::Value::String(s) => s.clone(),
                    serde_norway::Value::Bool(b) => b.to_string(),
                    serde_norway::Value::Number(n) => n.to_string(),
                    _ => String::new(),
                };
                out.insert(key, value);
            }
        }
        _ => {}
    }
    out
}

/// Parses one compose file's services (pure).
pub fn parse_compose(file: &Path, text: &str) -> Result<Vec<Service>> {
    let doc: serde_norway::Value = serde_norway::from_str(text)
        .map_err(|e| check_failed(file, &format!("compose file does not parse: {e}")))?;
    let services = doc
        .get("services")
        .and_then(|s| s.as_mapping())
        .ok_or_else(|| check_failed(file, "compose file has no `services` mapping"))?;
    let mut out = Vec::new();
    for (name, svc) in services {
        let name = name.as_str().unwrap_or_default().to_string();
        let mut labels = labels_of(svc.get("labels"));
        labels.extend(labels_of(svc.get("deploy").and_then(|d| d.get("labels"))));
        out.push(Service {
            image: svc.get("image").and_then(|i| i.as_str()).map(String::from),
            name,
            labels,
        });
    }
    Ok(out)
}

/// Whether an image reference is pinned: a digest, or a tag that is not
/// `latest` (and no unresolved variable in it).
pub fn image_pinned(image: &str) -> bool {
    if image.contains("@sha256:") {
        return true;
    }
    if image.contains('$') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) => !tag.is_empty() && tag != "latest",
        None => false,
    }
}

/// A service's image interpolated with `.env.sample`'s values `sample`,
/// checked pinned; a static check failure names the file, the service and
/// the raw and interpolated text.
pub fn sampled_image(
    file: &Path,
    service: &Service,
    sample: &BTreeMap<String, String>,
) -> Result<Option<String>> {
    let Some(raw) = &service.image else {
        return Ok(None);
    };
    let image = interpolate::interpolate(raw, sample)
        .map_err(|e| {
            check_failed(
                file,
                &format!("image {raw:?} of service {}: {e}", service.name),
            )
        })?
        .value;
    if !image_pinned(&image) {
        let shown = if image == *raw {
            format!("{raw:?}")
        } else {
            format!("{raw:?} ({image:?} with .env.sample's values)")
        };
        return Err(check_failed(
            file,
            &format!(
                "image {shown} of service {} must be pinned to a version tag or digest (not latest)",
                service.name
            ),
        ));
    }
    Ok(Some(image))
}

/// The label that asks backupbot to back a service up.
pub(crate) const BACKUP_LABEL: &str = "backupbot.backup";

/// Whether the backup/restore tier runs, and the sentence the run logs
/// to say why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupTier {
    pub run: bool,
    pub reason: String,
}

/// `NAME=value` for each variable a value read, `NAME not set` for an
/// unset one: where the value came from.
fn sources(i: &Interpolated) -> String {
    i.vars
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => format!("{k} not set"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The backup/restore tier's decision (pure): it runs when some service's
/// `backupbot.backup` label, interpolated with `vars` (the values docker
/// gets, described by `source` in the reason), is `true`, the value
/// backupbot acts on. A label that does not interpolate (`${VAR:?msg}`
/// with VAR missing) is a recipe failure naming the service and the label.
pub fn backup_tier(
    services: &[Service],
    vars: &BTreeMap<String, String>,
    source: &str,
) -> Result<BackupTier> {
    let mut on = Vec::new();
    let mut off = Vec::new();
    for s in services {
        let Some(raw) = s.labels.get(BACKUP_LABEL) else {
            continue;
        };
        let i = interpolate::interpolate(raw, vars).map_err(|e| {
            Failure::with_code(
                TESTS_FAILED,
                format!(
                    "failed to read label {BACKUP_LABEL}={raw} of service {} with {source}: {e}",
                    s.name
                ),
            )
        })?;
        let mut said = format!("{BACKUP_LABEL}={raw}");
        if i.value != *raw || !i.vars.is_empty() {
            said += &format!(" is {:?} with {source}", i.value);
            if !i.vars.is_empty() {
                said += &format!(" ({})", sources(&i));
            }
        }
        said += &format!(", on service {}", s.name);
        if i.value == "true" {
            on.push(said);
        } else {
            off.push(said);
        }
    }
    Ok(if !on.is_empty() {
        BackupTier {
            run: true,
            reason: format!("backup/restore tier: {}", on.join("; ")),
        }
    } else if !off.is_empty() {
        BackupTier {
            run: false,
            reason: format!("backup/restore tier skipped: {}", off.join("; ")),
        }
    } else {
        BackupTier {
            run: false,
            reason: format!(
                "backup/restore tier skipped: no service of the recipe has a {BACKUP_LABEL} label"
            ),
        }
    })
}

/// The static checks (SPEC section 3 step 4), on a recipe checkout: the
/// `.env.sample` is present, every compose file it names parses, every
/// image, interpolated with `.env.sample`'s values, is pinned. A failure
/// is exit 1 naming the file and the rule.
pub(crate) fn static_checks(checkout: &Path) -> Result<RecipeInfo> {
    let sample = checkout.join(".env.sample");
    let text = std::fs::read_to_string(&sample)
        .map_err(|_| check_failed(&sample, "the recipe must have a readable .env.sample"))?;
    let env = parse_env(&text);
    let files = env
        .get("COMPOSE_FILE")
        .cloned()
        .unwrap_or_else(|| "compose.yml".to_string());
    let mut info = RecipeInfo::default();
    for f in files.split(':').filter(|f| !f.is_empty()) {
        if f.contains("..") || f.starts_with('/') {
            return Err(check_failed(
                &sample,
                &format!("COMPOSE_FILE entry {f:?} must be a relative path inside the recipe"),
            ));
        }
        let path = checkout.join(f);
        let text = std::fs::read_to_string(&path)
            .map_err(|_| check_failed(&path, "a compose file named in COMPOSE_FILE must exist"))?;
        let services = parse_compose(&path, &text)?;
        for s in &services {
            info.sampled_images.extend(sampled_image(&path, s, &env)?);
        }
        info.services.extend(services);
        info.compose_files.push(path);
    }
    Ok(info)
}

/// A release tag's version: the leading `X.Y.Z` (a `v` prefix and a
/// `+upstream` suffix allowed), as numbers for ordering.
pub(crate) fn parse_version(tag: &str) -> Option<(u64, u64, u64)> {
    let t = tag.strip_prefix('v').unwrap_or(tag);
    let core = t.split(['+', '-']).next()?;
    let mut parts = core.split('.');
    let v = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    if parts.next().is_some() {
        return None;
    }
    Some(v)
}

/// The recipe's latest release before the ref under test: the highest
/// version among `merged` tags (reachable from the ref) that do not point at
/// the ref itself (`at_ref`).
pub fn latest_release_before(merged: &[String], at_ref: &[String]) -> Option<String> {
    merged
        .iter()
        .filter(|t| !at_ref.contains(t))
        .filter_map(|t| parse_version(t).map(|v| (v, t)))
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)))
        .map(|(_, t)| t.clone())
}

/// The upgrade tier's check of abra's chaos-version label: the first
/// characters of the checkout's HEAD sha, `+U` when the tree was dirty.
/// It must be a non-empty prefix of the full sha under test with no dirty
/// marker (git's short-sha length is never assumed).
pub fn check_chaos_version(label: &str, sha: &str) -> std::result::Result<(), String> {
    if label.is_empty() {
        return Err("no chaos-version label on the app service".into());
    }
    if label.contains("+U") {
        return Err("the chaos deploy was of a dirty working tree (+U)".into());
    }
    let prefix = label.split('+').next().unwrap_or_default();
    if prefix.len() < 4 || !sha.starts_with(prefix) {
        return Err(format!("it is not a prefix of the ref under test {sha}"));
    }
    Ok(())
}
