//! Host-owned settings (SPEC section 7): the settings that decide what runs
//! and where come from a file the host owns, and a step's environment, where
//! Drone puts a build's parameters, cannot change them.
//!
//! Why a file and not the environment: drone-runner-exec builds a step's
//! environment from its own environment file, then the build's parameters,
//! then the runner's PATH and USER (`environ.Combine(c.Environ,
//! c.Build.Params, hostEnviron(), ...)` in its engine/compiler/compiler.go;
//! a later map wins), and runs the step with exactly that
//! (`cmd.Env = environ.Slice(step.Envs)` in engine/exec.go). A parameter
//! `CCCI_ABRA=/tmp/evil` therefore replaces the host's value before
//! cc-ci-run starts, and nothing in the environment says which value came
//! from where. The file does: it is read from a path a build cannot name.
//!
//! The path is [`DEFAULT_PATH`], or `--host-settings FILE` on the command
//! line, which has no environment variable on purpose: a build's parameters
//! reach only the environment, never a step's command line (that is the
//! pipeline's `.drone.yml`, which runs what it likes on the host anyway).
//!
//! With no file at the default path the environment decides, as it always
//! did (a developer's machine, the test suite, a host set up by hand).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::exit::Failure;
use crate::manual::{BUILD_SETTABLE, HOST_OWNED_OTHERS};

/// Where the host's settings file is unless `--host-settings` says
/// otherwise (the NixOS module writes it).
pub const DEFAULT_PATH: &str = "/etc/cc-ci-run/host.env";

/// Whether a build's environment may not change `name` on a host with a
/// settings file: every `CCCI_*` variable cc-ci-run reads except the
/// [`BUILD_SETTABLE`] ones and the ones it sets for the tests it runs, and
/// the [`HOST_OWNED_OTHERS`].
pub fn host_owned(name: &str) -> bool {
    if HOST_OWNED_OTHERS.contains(&name) {
        return true;
    }
    name.starts_with("CCCI_")
        && !BUILD_SETTABLE.contains(&name)
        && crate::manual::ENVIRONMENT
            .iter()
            .any(|v| v.name == name && v.default != crate::manual::SET_FOR_TESTS)
}

/// Reads a host settings file's text: `NAME='VALUE'` lines (the value taken
/// literally, as godotenv reads single quotes, which is how the NixOS module
/// writes it) or `NAME=VALUE` with no quote or space; blank lines and `#`
/// comments. Every name must be one `host_owned` or `BUILD_SETTABLE`
/// names, so a typo in the file is an error, not a setting silently lost.
pub fn parse(text: &str, file: &Path) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let at = || format!("{}:{}", file.display(), i + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(Failure::usage(format!(
                "{}: not NAME='VALUE': {line}",
                at()
            )));
        };
        let name = name.trim();
        if !(host_owned(name) || BUILD_SETTABLE.contains(&name)) {
            return Err(Failure::usage(format!(
                "{}: {name} is not a setting cc-ci-run reads (`cc-ci-run --help` lists them)",
                at()
            )));
        }
        let value = match value.strip_prefix('\'') {
            Some(rest) => match rest.strip_suffix('\'') {
                Some(v) if !v.contains('\'') => v,
                _ => {
                    return Err(Failure::usage(format!(
                        "{}: {name}: a quoted value is one '...' with no ' inside",
                        at()
                    )))
                }
            },
            None if value.contains(['"', '\'', ' ', '\t']) => {
                return Err(Failure::usage(format!(
                    "{}: {name}: an unquoted value has no quote or space (write {name}='...')",
                    at()
                )))
            }
            None => value,
        };
        if out.insert(name.to_string(), value.to_string()).is_some() {
            return Err(Failure::usage(format!("{}: {name} is set twice", at())));
        }
    }
    Ok(out)
}

/// The settings file's owner and mode rule: whoever can write it decides
/// what every build runs, so it belongs to root or to the running user and
/// is writable by no one else.
fn check_owner(file: &Path, meta: &std::fs::Metadata) -> Result<()> {
    let euid = nix::unistd::geteuid().as_raw();
    if !meta.is_file() {
        return Err(Failure::usage(format!(
            "host settings {}: not a regular file",
            file.display()
        )));
    }
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(Failure::usage(format!(
            "host settings {}: owned by uid {}, not root or this user (uid {euid})",
            file.display(),
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Failure::usage(format!(
            "host settings {}: writable by group or others (mode {:o}); chmod go-w it",
            file.display(),
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// The host's settings: the file at `explicit` (which must exist) or at
/// [`DEFAULT_PATH`] (`None` when there is none).
pub fn load(explicit: Option<&Path>) -> Result<Option<(PathBuf, BTreeMap<String, String>)>> {
    let file = explicit.map_or_else(|| PathBuf::from(DEFAULT_PATH), Path::to_path_buf);
    let meta = match std::fs::metadata(&file) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
            return Ok(None)
        }
        Err(e) => {
            return Err(Failure::usage(format!(
                "host settings {}: {e}",
                file.display()
            )))
        }
    };
    check_owner(&file, &meta)?;
    let text = std::fs::read_to_string(&file)
        .map_err(|e| Failure::usage(format!("host settings {}: {e}", file.display())))?;
    let settings = parse(&text, &file)?;
    Ok(Some((file, settings)))
}

/// The host-owned variables of `env` that differ from the host's settings
/// (or that the host does not set at all), as `NAME` with what each is.
pub fn conflicts(
    settings: &BTreeMap<String, String>,
    env: &BTreeMap<String, String>,
) -> Vec<String> {
    env.iter()
        .filter(|(k, _)| host_owned(k))
        .filter_map(|(k, v)| match settings.get(k) {
            Some(host) if host == v => None,
            Some(host) => Some(format!("{k}={v} (the host's is {host})")),
            None => Some(format!("{k}={v} (the host leaves it to its default)")),
        })
        .collect()
}

/// Applies the host's settings to this process before anything else reads
/// the environment: a host-owned variable the environment sets to another
/// value than the host's is exit 2 naming it, before anything is touched;
/// the host's settings the environment lacks are set, so a command run by
/// hand (`sudo -u cc-ci-run cc-ci-run status`) sees the host's state
/// directory. Returns whether the environment changed (the command line is
/// then parsed again, since clap reads its defaults from it).
pub fn apply(explicit: Option<&Path>) -> Result<bool> {
    let Some((file, settings)) = load(explicit)? else {
        return Ok(false);
    };
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let bad = conflicts(&settings, &env);
    if !bad.is_empty() {
        return Err(Failure::usage(format!(
            "host-owned setting{} changed by the environment: {}; {} decides {}, and a build may set only {}",
            if bad.len() > 1 { "s" } else { "" },
            bad.join(", "),
            file.display(),
            if bad.len() > 1 { "them" } else { "it" },
            BUILD_SETTABLE.join(", ")
        )));
    }
    let mut changed = false;
    for (k, v) in &settings {
        if !env.contains_key(k) {
            // Still single-threaded: main calls this before anything starts.
            std::env::set_var(k, v);
            changed = true;
        }
    }
    Ok(changed)
}
