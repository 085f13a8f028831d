//! Raw arguments plus an injected environment → a validated run config,
//! and the settings of the other commands (`locks`, `janitor`).
//!
//! Every input is checked here before anything is touched (SPEC section
//! 3), and each error names the field and the rule, so a bad `!testme`
//! parameter ends with exit 2 and nothing created under the state
//! directory or on the server. The rules are pure functions of the values
//! and an injected environment ([`Env`]), with three exceptions, each named
//! as such: [`process_env`] reads the process's environment (once, at a
//! command's entry), and [`check_state_dir`] and [`canonical_abra_home`]
//! stat the directory they check. The bottom layer: `config` uses only
//! `exit` and `units` (and holds the name rules, [`names`]), so every
//! other part can read its settings from here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

pub mod janitor;
pub mod locks;
pub mod names;

use crate::exit::Failure;
use names::{
    bad, check_build, check_domain, check_drone_repo, check_label, check_pr, check_ref,
    check_run_id, check_server,
};

/// The environment as the config sees it (injected for tests).
pub type Env = HashMap<String, String>;

/// The domain suffix used when CCCI_DOMAIN_SUFFIX is unset.
pub(crate) const DEFAULT_DOMAIN_SUFFIX: &str = "ci.localhost";

/// abra truncates stack names to this many characters.
pub(crate) const STACK_NAME_MAX: usize = 45;

/// Which version the install tier deploys first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Base {
    LatestRelease,
    LastGreen,
    Version(String),
}

impl Base {
    /// `latest-release`, `last-green` or a release tag, which must be a
    /// git ref ([`check_ref`] names `field` in its error).
    pub fn parse(field: &str, value: &str) -> Result<Base> {
        Ok(match value {
            "latest-release" => Base::LatestRelease,
            "last-green" => Base::LastGreen,
            v => {
                check_ref(field, v)?;
                Base::Version(v.to_string())
            }
        })
    }
}

/// The convergence bound of a recipe that sets no timeout label, when the
/// operator gave none.
pub const DEFAULT_CONVERGE_TIMEOUT: Duration = Duration::from_secs(300);

/// What the operator gave `run` (its flags, or their `CCCI_*` variables),
/// as plain values: the caller fills it from its command line.
#[derive(Clone, Debug, Default)]
pub struct RunInput {
    pub recipe: Option<String>,
    pub git_ref: Option<String>,
    pub pr: Option<String>,
    pub server: String,
    pub domain: Option<String>,
    pub base: Option<String>,
    pub quick: bool,
    pub bounds: RunBounds,
}

/// A run's time bounds as the operator gave them (flags or `CCCI_*`
/// variables): taken as given once none is zero, so the raw input and the
/// validated config share them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunBounds {
    /// The whole run's deadline (`--timeout`).
    pub timeout: Duration,
    pub teardown_timeout: Duration,
    /// The convergence bound the operator gave (`--converge-timeout`,
    /// `CCCI_CONVERGE_TIMEOUT`); None: the recipe's timeout label, else
    /// [`DEFAULT_CONVERGE_TIMEOUT`] (SPEC section 3a).
    pub converge_timeout: Option<Duration>,
    /// After a paused update, how long the current spec must run.
    pub stable_for: Duration,
    /// SIGTERM to SIGKILL.
    pub grace: Duration,
}

/// A validated `run`.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub run_id: String,
    pub recipe: String,
    /// The ref under test; None means the recipe's default branch.
    pub git_ref: Option<String>,
    pub pr: Option<u32>,
    pub server: String,
    pub domain: String,
    pub stack: String,
    /// The base the operator gave (`--base`, `CCCI_BASE`); None: the
    /// recipe's ccci.toml `base`, else the latest release.
    pub base: Option<Base>,
    pub quick: bool,
    pub bounds: RunBounds,
    pub skip_fetch: bool,
    /// The CI repository's own tests for recipes (`<dir>/<recipe>/`).
    pub ci_tests_dir: PathBuf,
    /// The app's base URL the tests get (`CCCI_APP_URL`), from
    /// `CCCI_APP_URL_TEMPLATE`.
    pub app_url: String,
    /// The floor (`CCCI_FLOOR`): Some(false) off, Some(true) on whatever
    /// the recipe's settings say; None: the recipe's `floor`, else on.
    pub floor: Option<bool>,
}

/// The stack name abra derives from a domain: dots become underscores, and
/// the result is cut to 45 characters (abra's `StackName`).
pub fn stack_name(domain: &str) -> String {
    let mut s = domain.replace('.', "_");
    s.truncate(STACK_NAME_MAX);
    s
}

/// The lane of the domain template: `pr<N>`, `b<build>` or `m<pid>`.
pub(crate) fn lane(pr: Option<u32>, build: Option<u64>, pid: u32) -> String {
    match (pr, build) {
        (Some(n), _) => format!("pr{n}"),
        (None, Some(b)) => format!("b{b}"),
        (None, None) => format!("m{pid}"),
    }
}

/// The default RUN_APP_RE: exactly the names the domain template produces
/// for `suffix`, and nothing else.
pub fn default_run_app_re(suffix: &str) -> String {
    format!(
        "^[a-z0-9]([a-z0-9-]*[a-z0-9])?-(pr[1-9][0-9]*|b[0-9]+|m[0-9]+)\\.{}$",
        regex::escape(suffix)
    )
}

fn env_nonempty<'a>(env: &'a Env, key: &str) -> Option<&'a str> {
    env.get(key).map(String::as_str).filter(|v| !v.is_empty())
}

/// An on/off switch of the environment, the one reading of every switch
/// (`CCCI_SKIP_FETCH`, `CCCI_FLOOR`, `CCCI_JANITOR`): `1`, `true`, `yes`,
/// `on` or `0`, `false`, `no`, `off`, in any case; None when unset or
/// empty (the caller's default).
pub(crate) fn env_switch(env: &Env, key: &str) -> Result<Option<bool>> {
    match env_nonempty(env, key) {
        None => Ok(None),
        Some(v) => switch(v).map(Some).ok_or_else(|| bad(key, v, SWITCH_RULE)),
    }
}

/// What a switch accepts, for messages.
pub const SWITCH_RULE: &str = "must be 1/true/yes/on or 0/false/no/off";

/// The one on/off rule of every switch, in the environment or on the
/// command line: `1/true/yes/on` or `0/false/no/off`, in any case.
pub fn switch(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Whether an environment flag is on ([`env_switch`]; unset: off).
pub(crate) fn env_flag(env: &Env, key: &str) -> Result<bool> {
    Ok(env_switch(env, key)?.unwrap_or(false))
}

/// The default of `CCCI_APP_URL_TEMPLATE`.
pub const DEFAULT_APP_URL_TEMPLATE: &str = "https://{domain}/";

/// The app's base URL from `CCCI_APP_URL_TEMPLATE` (default
/// [`DEFAULT_APP_URL_TEMPLATE`]): `{domain}` is replaced by the app's
/// domain. The template is an `http://` or `https://` URL of printable
/// ASCII without spaces, quotes or backslashes, and `{domain}` is the only
/// placeholder (so a typo such as `{domian}` is an error, not a URL).
pub fn app_url(env: &Env, domain: &str) -> Result<String> {
    const RULE: &str = "must be an http:// or https:// URL (printable ASCII, no spaces, quotes or backslashes) whose only placeholder is {domain}";
    let template = env_nonempty(env, "CCCI_APP_URL_TEMPLATE").unwrap_or(DEFAULT_APP_URL_TEMPLATE);
    let rest = template.replace("{domain}", "");
    let ok = (template.starts_with("http://") || template.starts_with("https://"))
        && template.len() <= 2000
        && template
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"\"'\\`".contains(&b))
        && !rest.contains(['{', '}'])
        && template
            .split_once("://")
            .is_some_and(|(_, host)| !host.is_empty() && !host.starts_with('/'));
    if !ok {
        return Err(bad("CCCI_APP_URL_TEMPLATE", template, RULE));
    }
    Ok(template.replace("{domain}", domain))
}

/// `CCCI_FLOOR`: `on` or `off` (also 1/true/yes, 0/false/no); None when
/// unset or empty (the recipe's `floor` setting decides, else on).
pub fn floor(env: &Env) -> Result<Option<bool>> {
    env_switch(env, "CCCI_FLOOR")
}

/// The CI repository's tests of recipes (`CCCI_CI_TESTS`, default `tests`).
pub fn ci_tests_dir(env: &Env) -> PathBuf {
    PathBuf::from(env_nonempty(env, "CCCI_CI_TESTS").unwrap_or("tests"))
}

/// Validates `run`'s arguments. `pid` is the wrapper's pid (for manual run
/// ids and lanes), the same number in the wrapper and in the harness.
/// `check_tests` checks the test runner's options, which are the test
/// runner's to judge, at their place among the checks (after the bounds,
/// before the app URL), so the first error named is the same whichever
/// part holds the rule.
pub fn run_config(
    args: &RunInput,
    env: &Env,
    pid: u32,
    check_tests: impl FnOnce() -> Result<()>,
) -> Result<RunConfig> {
    let recipe = args
        .recipe
        .as_deref()
        .ok_or_else(|| Failure::usage("missing recipe: pass --recipe NAME or set CCCI_RECIPE"))?;
    check_label("recipe", recipe)?;

    let build = match env_nonempty(env, "DRONE_BUILD_NUMBER") {
        Some(b) => Some(check_build("DRONE_BUILD_NUMBER", b)?),
        None => None,
    };
    let pr = match (args.pr.as_deref(), env_nonempty(env, "DRONE_PULL_REQUEST")) {
        (Some(p), _) => Some(check_pr("pr", p)?),
        (None, Some(p)) => Some(check_pr("DRONE_PULL_REQUEST", p)?),
        (None, None) => None,
    };
    // DRONE_COMMIT_SHA names the recipe's commit only when the build runs
    // in the recipe's own repository (push, pull request); a `custom` build
    // (the `!testme` bridge, the API) carries the CI repository's commit.
    let drone_sha = env_nonempty(env, "DRONE_COMMIT_SHA")
        .filter(|_| env_nonempty(env, "DRONE_BUILD_EVENT") != Some("custom"));
    let git_ref = match (args.git_ref.as_deref(), drone_sha) {
        (Some(r), _) => {
            check_ref("ref", r)?;
            Some(r.to_string())
        }
        // A pull request's head is fetched by number.
        (None, Some(sha)) if pr.is_none() => {
            check_ref("DRONE_COMMIT_SHA", sha)?;
            Some(sha.to_string())
        }
        _ => None,
    };

    let run_id = match (env_nonempty(env, "CCCI_RUN_ID"), build) {
        (Some(id), _) => id.to_string(),
        (None, Some(b)) => {
            let repo = env_nonempty(env, "DRONE_REPO").ok_or_else(|| {
                Failure::usage(
                    "DRONE_BUILD_NUMBER is set but DRONE_REPO is not: Drone numbers builds per repository, so a run id needs both (or set CCCI_RUN_ID)",
                )
            })?;
            check_drone_repo(repo)?;
            drone_run_id(repo, b)
        }
        (None, None) => format!("manual-{pid}"),
    };
    check_run_id(&run_id)?;

    check_server(&args.server)?;
    let suffix = env_nonempty(env, "CCCI_DOMAIN_SUFFIX").unwrap_or(DEFAULT_DOMAIN_SUFFIX);
    check_domain("CCCI_DOMAIN_SUFFIX", suffix)?;
    let domain = match args.domain.as_deref() {
        Some(d) => {
            check_domain("domain", d)?;
            d.to_string()
        }
        None => {
            let d = format!("{recipe}-{}.{suffix}", lane(pr, build, pid));
            check_domain("domain (from the template)", &d)?;
            d
        }
    };
    let base = match args.base.as_deref() {
        None => None,
        Some(v) => Some(Base::parse("base", v)?),
    };
    let skip_fetch = env_flag(env, "CCCI_SKIP_FETCH")?;
    let ci_tests_dir = ci_tests_dir(env);
    for (field, d) in [
        ("timeout", args.bounds.timeout),
        ("teardown-timeout", args.bounds.teardown_timeout),
        (
            "converge-timeout",
            args.bounds
                .converge_timeout
                .unwrap_or(DEFAULT_CONVERGE_TIMEOUT),
        ),
        ("stable-for", args.bounds.stable_for),
    ] {
        if d.is_zero() {
            return Err(bad(
                field,
                "0",
                "must be longer than 0 (a zero bound would stop the run before it starts)",
            ));
        }
    }
    check_tests()?;
    let app_url = app_url(env, &domain)?;
    let floor = floor(env)?;
    Ok(RunConfig {
        app_url,
        floor,
        stack: stack_name(&domain),
        run_id,
        recipe: recipe.to_string(),
        git_ref,
        pr,
        server: args.server.clone(),
        domain,
        base,
        quick: args.quick,
        bounds: args.bounds,
        skip_fetch,
        ci_tests_dir,
    })
}

/// The run id of a Drone build (SPEC section 3.1): `drone-<repo>-<build>`,
/// `<repo>` being DRONE_REPO lowercased with every run of characters
/// outside `a-z0-9` turned into one `-`. Drone numbers builds per
/// repository, so the repository is part of the id. An id that would pass
/// 63 characters keeps a cut repository part followed by `-` and 8 hex
/// digits of the SHA-256 of the whole DRONE_REPO: two repositories never
/// share an id, and the same repository and build always give the same one.
pub fn drone_run_id(repo: &str, build: u64) -> String {
    let mut slug = String::with_capacity(repo.len());
    for c in repo.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_matches('-');
    let id = format!("drone-{slug}-{build}");
    if id.len() <= 63 {
        return id;
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(repo.as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    // "drone-" + cut + "-" + hash + "-" + build fits 63.
    let room =
        63usize.saturating_sub("drone-".len() + 1 + hash.len() + 1 + build.to_string().len());
    let cut = slug[..room.min(slug.len())].trim_end_matches('-');
    if cut.is_empty() {
        format!("drone-{hash}-{build}")
    } else {
        format!("drone-{cut}-{hash}-{build}")
    }
}

/// Which abra directory is canonical: CCCI_ABRA_HOME, else ABRA_DIR, else
/// none. Under Drone, HOME is a fresh directory, so `~/.abra` is never a
/// silent default: the caller checks that the directory exists.
pub(crate) fn abra_home(env: &Env) -> Option<(&'static str, PathBuf)> {
    if let Some(p) = env_nonempty(env, "CCCI_ABRA_HOME") {
        return Some(("CCCI_ABRA_HOME", PathBuf::from(p)));
    }
    env_nonempty(env, "ABRA_DIR").map(|p| ("ABRA_DIR", PathBuf::from(p)))
}

/// What `stat` says of an existing state directory (for [`state_dir_rule`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirFacts {
    pub is_dir: bool,
    pub uid: u32,
    pub mode: u32,
}

/// The state directory rule of SPEC section 1 (pure): an absolute path; if
/// it exists, a directory owned by the running user (`euid`) or root and not
/// writable by group or others, since whoever can write there can plant
/// locks and run records. A directory that does not exist yet is created by
/// the run with mode 0755.
pub fn state_dir_rule(path: &std::path::Path, facts: Option<DirFacts>, euid: u32) -> Result<()> {
    let shown = path.display().to_string();
    if !path.is_absolute() {
        return Err(bad(
            "state directory (CCCI_STATE_DIR or --state-dir)",
            &shown,
            "must be an absolute path (a relative one lands in the Drone workspace, which Drone deletes, and concurrent builds would lock in different directories)",
        ));
    }
    let Some(f) = facts else {
        return Ok(());
    };
    if !f.is_dir {
        return Err(bad(
            "state directory (CCCI_STATE_DIR or --state-dir)",
            &shown,
            "must be a directory",
        ));
    }
    if f.uid != euid && f.uid != 0 {
        return Err(bad(
            "state directory (CCCI_STATE_DIR or --state-dir)",
            &shown,
            &format!(
                "must be owned by the running user (uid {euid}) or root, not uid {}: chown it, or use another directory",
                f.uid
            ),
        ));
    }
    if f.mode & 0o022 != 0 {
        return Err(bad(
            "state directory (CCCI_STATE_DIR or --state-dir)",
            &shown,
            &format!(
                "must not be writable by group or others (mode {:04o}): chmod go-w it",
                f.mode & 0o7777
            ),
        ));
    }
    Ok(())
}

/// Checks the canonical abra directory: under Drone, HOME is a fresh
/// directory, so a missing one is a configuration error (exit 2), never a
/// silent `~/.abra`.
pub(crate) fn canonical_abra_home(env: &Env) -> Result<PathBuf> {
    match abra_home(env) {
        Some((_, p)) if p.is_dir() => Ok(p),
        Some((var, p)) => Err(Failure::usage(format!(
            "{var}={} is not an existing directory: set CCCI_ABRA_HOME to the host's canonical abra directory",
            p.display()
        ))),
        None => Err(Failure::usage(
            "no abra directory: set CCCI_ABRA_HOME to the host's canonical abra directory (or ABRA_DIR); HOME under Drone is a fresh per-build directory",
        )),
    }
}

/// Checks the state directory before anything is written under it (SPEC
/// section 1): the pure rule of [`state_dir_rule`] on what
/// `stat` (following a symlink an operator may have made) says of it.
pub(crate) fn check_state_dir(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let facts = match std::fs::metadata(path) {
        Ok(m) => Some(DirFacts {
            is_dir: m.is_dir(),
            uid: m.uid(),
            mode: m.mode(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(Failure::usage(format!(
                "invalid state directory {:?}: cannot be read: {e}",
                path.display().to_string()
            )))
        }
    };
    state_dir_rule(path, facts, nix::unistd::geteuid().as_raw())
}

/// The environment variable that sets how long a lock may be held before
/// `locks` (and the janitor) flag it.
pub(crate) const LOCK_MAX_AGE_VAR: &str = "CCCI_LOCK_MAX_AGE";
/// Its default: longer than any run's deadline plus teardown.
pub(crate) const LOCK_MAX_AGE_DEFAULT: Duration = Duration::from_secs(2 * 3600);

/// `CCCI_LOCK_MAX_AGE` from its raw value (None: unset). A bad value is exit
/// 2 naming the variable.
pub fn lock_max_age_value(value: Option<&str>) -> Result<Duration> {
    match value {
        None => Ok(LOCK_MAX_AGE_DEFAULT),
        Some(v) => crate::units::parse_duration(v)
            .map_err(|e| Failure::usage(format!("{LOCK_MAX_AGE_VAR}: {e}"))),
    }
}

/// `CCCI_LOCK_MAX_AGE` from the environment: the one reading both `locks`
/// and the janitor use. An empty value is a mistake, not "unset".
pub(crate) fn lock_max_age(env: &Env) -> Result<Duration> {
    lock_max_age_value(env.get(LOCK_MAX_AGE_VAR).map(String::as_str))
}

/// The process's environment, read once at a command's entry and passed
/// down: every rule below reads this map, so tests can hand it any value.
pub(crate) fn process_env() -> Env {
    std::env::vars().collect()
}

/// The engine `DOCKER_HOST` names (None: unset or empty, the default
/// socket): what the lock settings and the external programs' settings
/// (`ext::Tools`) read.
pub(crate) fn docker_host(env: &Env) -> Option<String> {
    env_nonempty(env, "DOCKER_HOST").map(str::to_string)
}

/// How close (edits) an unknown `CCCI_*` name must be to a known one to be
/// taken for a typo of it.
const TYPO_EDITS: usize = 2;

/// The `CCCI_*` variables of an environment that cc-ci-run does not read.
#[derive(Debug, Default)]
pub(crate) struct Unknown<'a> {
    /// Each a typo of a known one: `NAME (did you mean KNOWN?)`.
    pub typos: Vec<String>,
    /// The others (another tool's variable, or one a newer version reads),
    /// sorted.
    pub others: Vec<&'a str>,
}

impl Unknown<'_> {
    /// A typo of a known variable (`CCCI_TEST_TIMOUT`) is exit 2 naming
    /// both, before anything is touched, since the run would otherwise go
    /// on with the default its operator meant to change.
    pub(crate) fn refuse_typos(&self) -> Result<()> {
        if self.typos.is_empty() {
            return Ok(());
        }
        Err(Failure::usage(format!(
            "unknown variable{} in the environment: {}; cc-ci-run reads only the variables `cc-ci-run --help` lists",
            if self.typos.len() > 1 { "s" } else { "" },
            self.typos.join(", ")
        )))
    }
}

/// The `CCCI_*` variables of `env` that are neither `known` nor under a
/// `reserved` prefix, each a typo of a known one (at most [`TYPO_EDITS`]
/// edits away) or another.
pub(crate) fn unknown_variables<'a>(
    env: &'a Env,
    known: &[&str],
    reserved: &[&str],
) -> Unknown<'a> {
    let mut unknown: Vec<&str> = env
        .keys()
        .map(String::as_str)
        .filter(|k| k.starts_with("CCCI_") && !known.contains(k))
        .filter(|k| !reserved.iter().any(|p| k.starts_with(p)))
        .collect();
    unknown.sort_unstable();
    let mut out = Unknown::default();
    for name in unknown {
        let closest = known
            .iter()
            .map(|k| (edits(name, k), *k))
            .min()
            .filter(|(d, _)| *d <= TYPO_EDITS);
        match closest {
            Some((_, k)) => out.typos.push(format!("{name} (did you mean {k}?)")),
            None => out.others.push(name),
        }
    }
    out
}

/// The Levenshtein distance between two ASCII names.
fn edits(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}
