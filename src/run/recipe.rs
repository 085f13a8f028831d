//! What cc-ci-run reads of a recipe (pure): `.env.sample`, the compose
//! files it names, the static checks of SPEC section 3 step 4, whether the
//! backup/restore tier runs, and which release is the base of the install
//! tier.
//!
//! Everything is read as SPEC section 3a says, as abra and docker read
//! it: env files by abra's godotenv reader ([`envfile`]); the compose
//! files of the `COMPOSE_FILE` of the env file a deploy uses, with YAML
//! merge keys applied and every value interpolated (`interpolate`) with
//! the values docker gets (that env file, the recipe's `abra.sh`
//! exports, STACK_NAME). The static checks read them with `.env.sample`
//! (no app exists yet); each deploy reads them again with the app's env
//! file, before it deploys. Whether the backup/restore tier runs is
//! decided from the labels the engine holds once the app is deployed
//! ([`backup_tier`]), not from these files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::exit::{Failure, TESTS_FAILED};
use crate::ext::abra::envfile::{self, EnvFile};
use crate::ext::docker::labels::ServiceLabels;
use crate::run::interpolate;

/// Reads env-file text as abra does ([`envfile`]); `file` names it in
/// the error, a static check failure (exit 1) naming the file and line.
pub fn read_env(file: &Path, text: &str) -> Result<EnvFile> {
    envfile::parse(text).map_err(|e| {
        check_failed(
            file,
            &format!("env file does not read as abra reads it (godotenv): {e}"),
        )
    })
}

/// The values of env-file text, as abra reads them (an unreadable file
/// reads as the values before the bad line: callers that must refuse it
/// use [`read_env`]).
pub fn parse_env(text: &str) -> BTreeMap<String, String> {
    envfile::parse(text).map(|e| e.vars).unwrap_or_default()
}

/// The exports of a recipe's `abra.sh`, which abra merges into the values
/// it deploys with (config and secret versions live there). abra reads
/// the lines `export NAME=VALUE` (a `#` line is not one); whether it
/// strips quotes around VALUE is not known, so a value quoted with
/// matching quotes is taken without them, and an unquoted one (what
/// public recipes write: `export APP_ENTRYPOINT_VERSION=v1`) is the same
/// either way.
pub fn abra_sh_exports(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(def) = line.strip_prefix("export ") else {
            continue;
        };
        let Some((k, v)) = def.trim_start().split_once('=') else {
            continue;
        };
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let v = v.trim();
        let v = ['"', '\'']
            .iter()
            .find_map(|q| v.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(v);
        out.insert(k.to_string(), v.to_string());
    }
    out
}

/// Sets `key=value` in env-file text: the first definition is replaced and
/// later ones dropped (the last definition wins for abra, so a later one
/// would undo the change), or the line is appended.
pub fn set_env(text: &str, key: &str, value: &str) -> String {
    let mut found = false;
    let defines = |l: &str| {
        let t = l.trim_start();
        let t = t.strip_prefix("export ").unwrap_or(t);
        t.split_once('=').is_some_and(|(k, _)| k.trim() == key)
    };
    let mut out: Vec<String> = Vec::new();
    for l in text.lines() {
        if defines(l) {
            if !found {
                found = true;
                out.push(format!("{key}={value}"));
            }
        } else {
            out.push(l.to_string());
        }
    }
    if !found {
        out.push(format!("{key}={value}"));
    }
    out.join("\n") + "\n"
}

/// The values `abra app deploy` gives docker to interpolate the compose
/// files with: the app's env file, the recipe's `abra.sh` exports merged
/// over them (abra merges them into the app's values), and `STACK_NAME`
/// (abra sets it; a `STACK_NAME` in the env file is the stack name abra
/// uses, so it wins).
pub fn deploy_vars(
    env: &BTreeMap<String, String>,
    abra_sh: &BTreeMap<String, String>,
    stack: &str,
) -> BTreeMap<String, String> {
    let mut vars = env.clone();
    vars.extend(abra_sh.iter().map(|(k, v)| (k.clone(), v.clone())));
    vars.entry("STACK_NAME".to_string())
        .or_insert_with(|| stack.to_string());
    vars
}

/// One service of the compose files, interpolated as docker deploys it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Service {
    pub name: String,
    /// The image as written, and as interpolated.
    pub raw_image: Option<String>,
    pub image: Option<String>,
    /// Service labels: `deploy.labels` (what backupbot and abra read).
    pub labels: BTreeMap<String, String>,
    /// The service's own `labels:`: labels of its containers.
    pub container_labels: BTreeMap<String, String>,
}

/// The compose files a deploy uses, read as docker's loader reads them.
#[derive(Clone, Debug, Default)]
pub struct Compose {
    pub files: Vec<PathBuf>,
    /// One per service name, the files merged in order (a later file's
    /// image replaces, its labels add to and replace by key).
    pub services: Vec<Service>,
}

/// What the static checks learned of a recipe.
#[derive(Clone, Debug, Default)]
pub(crate) struct RecipeInfo {
    pub compose: Compose,
    /// Every service's image interpolated with `.env.sample`'s values and
    /// `abra.sh`'s exports (checked pinned): what the prepare phase pulls.
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

fn scalar(v: &serde_norway::Value) -> String {
    match v {
        serde_norway::Value::String(s) => s.clone(),
        serde_norway::Value::Bool(b) => b.to_string(),
        serde_norway::Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
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
                out.insert(scalar(k), scalar(val));
            }
        }
        _ => {}
    }
    out
}

/// Interpolates every string value of `v` (keys stay as written, as
/// docker's loader leaves them); `at` is the path shown in an error.
fn interpolate_tree(
    v: &mut serde_norway::Value,
    vars: &BTreeMap<String, String>,
    at: &str,
) -> std::result::Result<(), String> {
    match v {
        serde_norway::Value::String(s) => {
            *s = interpolate::interpolate(s, vars)
                .map_err(|e| format!("{at}: {e}"))?
                .value;
        }
        serde_norway::Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, vars, &format!("{at}[{i}]"))?;
            }
        }
        serde_norway::Value::Mapping(m) => {
            for (k, item) in m.iter_mut() {
                let key = scalar(k);
                let path = if at.is_empty() {
                    key
                } else {
                    format!("{at}.{key}")
                };
                interpolate_tree(item, vars, &path)?;
            }
        }
        serde_norway::Value::Tagged(t) => interpolate_tree(&mut t.value, vars, at)?,
        _ => {}
    }
    Ok(())
}

/// Parses one compose file's services as docker's loader does (pure):
/// YAML anchors and merge keys (`<<: *x`) applied, then every value
/// interpolated with `vars`; a `${VAR:?msg}` whose VAR is missing, or a
/// malformed `$`, is a static check failure naming the file, the place
/// and the variable.
pub fn parse_compose(
    file: &Path,
    text: &str,
    vars: &BTreeMap<String, String>,
) -> Result<Vec<Service>> {
    let mut doc: serde_norway::Value = serde_norway::from_str(text)
        .map_err(|e| check_failed(file, &format!("compose file does not parse: {e}")))?;
    // serde_norway keeps `<<` as a key unless asked (docker's YAML reader
    // merges it).
    doc.apply_merge()
        .map_err(|e| check_failed(file, &format!("compose file's merge key: {e}")))?;
    let raw = doc.clone();
    interpolate_tree(&mut doc, vars, "").map_err(|e| check_failed(file, &e))?;
    let services = doc
        .get("services")
        .and_then(|s| s.as_mapping())
        .ok_or_else(|| check_failed(file, "compose file has no `services` mapping"))?;
    let mut out = Vec::new();
    for (name, svc) in services {
        let name = scalar(name);
        out.push(Service {
            raw_image: raw
                .get("services")
                .and_then(|s| s.get(name.as_str()))
                .and_then(|s| s.get("image"))
                .and_then(|i| i.as_str())
                .map(String::from),
            image: svc.get("image").and_then(|i| i.as_str()).map(String::from),
            labels: labels_of(svc.get("deploy").and_then(|d| d.get("labels"))),
            container_labels: labels_of(svc.get("labels")),
            name,
        });
    }
    Ok(out)
}

/// The compose files of `COMPOSE_FILE` in `env` (the values of the env
/// file `env_file`, the one the deploy uses), read from `checkout` with
/// `vars` (what docker gets: [`deploy_vars`]).
pub fn read_compose(
    checkout: &Path,
    env_file: &Path,
    env: &BTreeMap<String, String>,
    vars: &BTreeMap<String, String>,
) -> Result<Compose> {
    let files = env
        .get("COMPOSE_FILE")
        .filter(|f| !f.is_empty())
        .cloned()
        .unwrap_or_else(|| "compose.yml".to_string());
    let mut out = Compose::default();
    for f in files.split(':').filter(|f| !f.is_empty()) {
        if f.contains("..") || f.starts_with('/') {
            return Err(check_failed(
                env_file,
                &format!("COMPOSE_FILE entry {f:?} must be a relative path inside the recipe"),
            ));
        }
        let path = checkout.join(f);
        let text = std::fs::read_to_string(&path).map_err(|_| {
            check_failed(
                &path,
                &format!(
                    "a compose file named in COMPOSE_FILE ({files:?}, from {}) must exist",
                    env_file.display()
                ),
            )
        })?;
        for s in parse_compose(&path, &text, vars)? {
            match out.services.iter_mut().find(|o| o.name == s.name) {
                Some(o) => {
                    if s.image.is_some() {
                        o.image = s.image;
                        o.raw_image = s.raw_image;
                    }
                    o.labels.extend(s.labels);
                    o.container_labels.extend(s.container_labels);
                }
                None => out.services.push(s),
            }
        }
        out.files.push(path);
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

/// A service's interpolated image, checked pinned; a static check failure
/// names the file, the service and the raw and interpolated text.
pub fn pinned_image(files: &[PathBuf], service: &Service) -> Result<Option<String>> {
    let Some(image) = &service.image else {
        return Ok(None);
    };
    if !image_pinned(image) {
        let raw = service.raw_image.clone().unwrap_or_default();
        let shown = if *image == raw {
            format!("{raw:?}")
        } else {
            format!("{raw:?} ({image:?} with .env.sample's values)")
        };
        let file = files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>();
        return Err(Failure::with_code(
            TESTS_FAILED,
            format!(
                "static check failed: {}: image {shown} of service {} must be pinned to a version tag or digest (not latest)",
                file.join(", "),
                service.name
            ),
        ));
    }
    Ok(Some(image.clone()))
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

/// The backup/restore tier's decision (pure), from the services the
/// engine runs: it runs when one carries the service label
/// `backupbot.backup=true` (what backupbot acts on; the engine holds it
/// interpolated). A container label of that name is not read by
/// backupbot: the reason says so.
pub fn backup_tier(services: &[ServiceLabels]) -> BackupTier {
    let mut on = Vec::new();
    let mut off = Vec::new();
    let mut container = Vec::new();
    for s in services {
        if let Some(v) = s.labels.get(BACKUP_LABEL) {
            let said = format!("{BACKUP_LABEL}={v} on deployed service {}", s.name);
            if v == "true" {
                on.push(said);
            } else {
                off.push(said);
            }
        } else if let Some(v) = s.container_labels.get(BACKUP_LABEL) {
            container.push(format!(
                "service {} has {BACKUP_LABEL}={v} as a container label (`labels:`), which backupbot does not read (it reads deploy.labels)",
                s.name
            ));
        }
    }
    if !on.is_empty() {
        return BackupTier {
            run: true,
            reason: format!("backup/restore tier: {}", on.join("; ")),
        };
    }
    let mut why = if off.is_empty() {
        format!("no deployed service carries a {BACKUP_LABEL} deploy label")
    } else {
        off.join("; ")
    };
    if !container.is_empty() {
        why += &format!(" ({})", container.join("; "));
    }
    BackupTier {
        run: false,
        reason: format!("backup/restore tier skipped: {why}"),
    }
}

/// The recipe's timeout label `coop-cloud.${STACK_NAME}.timeout` (abra's
/// own deploy wait, in seconds) on any service of `compose`: its value
/// and the service, or Err with the text when it is not a number.
pub fn timeout_label(
    compose: &Compose,
    stack: &str,
) -> Option<std::result::Result<(std::time::Duration, String), String>> {
    let key = format!("coop-cloud.{stack}.timeout");
    compose.services.iter().find_map(|s| {
        let v = s.labels.get(&key)?;
        Some(
            v.trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .map(|n| {
                    (
                        std::time::Duration::from_secs(n),
                        format!("{key}={v} on service {}", s.name),
                    )
                })
                .ok_or_else(|| {
                    format!(
                        "{key}={v:?} on service {} is not a whole number of seconds",
                        s.name
                    )
                }),
        )
    })
}

/// The values a deploy of `checkout` with the env file `env_file` hands
/// docker: the env file read as abra reads it, `abra.sh`'s exports, and
/// STACK_NAME; with the env file's values alone (for COMPOSE_FILE).
pub fn values_for(
    checkout: &Path,
    env_file: &Path,
    stack: &str,
) -> Result<(BTreeMap<String, String>, BTreeMap<String, String>)> {
    let text = std::fs::read_to_string(env_file)
        .map_err(|_| check_failed(env_file, "the env file must be readable"))?;
    let env = read_env(env_file, &text)?.vars;
    let abra_sh = match std::fs::read_to_string(checkout.join("abra.sh")) {
        Ok(t) => abra_sh_exports(&t),
        Err(_) => BTreeMap::new(),
    };
    let vars = deploy_vars(&env, &abra_sh, stack);
    Ok((env, vars))
}

/// The static checks (SPEC section 3 step 4), on a recipe checkout: the
/// `.env.sample` is present and reads as abra reads it, every compose
/// file it names parses and interpolates (with `.env.sample`'s values,
/// `abra.sh`'s exports and STACK_NAME: no app exists yet), every image
/// is pinned. A failure is exit 1 naming the file and the rule.
pub(crate) fn static_checks(checkout: &Path, stack: &str) -> Result<RecipeInfo> {
    let sample = checkout.join(".env.sample");
    if !sample.is_file() {
        return Err(check_failed(
            &sample,
            "the recipe must have a readable .env.sample",
        ));
    }
    let (env, vars) = values_for(checkout, &sample, stack)?;
    let compose = read_compose(checkout, &sample, &env, &vars)?;
    let mut info = RecipeInfo::default();
    for s in &compose.services {
        info.sampled_images.extend(pinned_image(&compose.files, s)?);
    }
    info.compose = compose;
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
