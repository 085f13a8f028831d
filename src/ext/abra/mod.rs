//! Calling abra (SPEC section 9). Every mutating call passes `-n` (no
//! prompts); every call gets ABRA_DIR explicitly, so no call can fall back
//! to the canonical directory by accident.

pub mod envfile;
pub mod marker;
pub mod parse;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::ext::{self, Bound};
use crate::sys::spawn::Output;

/// abra with one ABRA_DIR.
#[derive(Clone, Debug)]
pub(crate) struct Abra {
    bin: OsString,
    abra_dir: PathBuf,
    run_id: String,
}

impl Abra {
    pub(crate) fn new(bin: &OsString, abra_dir: &Path, run_id: &str) -> Abra {
        Abra {
            bin: bin.clone(),
            abra_dir: abra_dir.to_path_buf(),
            run_id: run_id.to_string(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env("ABRA_DIR", &self.abra_dir)
            .env("CCCI_RUN_ID", &self.run_id);
        c
    }

    fn call(&self, args: &[&str], bound: &Bound) -> Result<Output> {
        let what = format!("abra {}", args.join(" "));
        crate::say!("$ {what}");
        ext::run_ok(&mut self.cmd(args), &what, bound)
    }

    /// `abra app new RECIPE [VERSION] -s SERVER -D DOMAIN -S [-C] -n`
    pub(crate) fn app_new(
        &self,
        recipe: &str,
        version: Option<&str>,
        server: &str,
        domain: &str,
        chaos: bool,
        bound: &Bound,
    ) -> Result<()> {
        let mut args = vec!["app", "new", recipe];
        args.extend(version);
        args.extend(["-s", server, "-D", domain, "-S"]);
        if chaos {
            args.push("-C");
        }
        args.push("-n");
        let what = format!("abra {}", args.join(" "));
        crate::say!("$ {what}");
        let out = ext::run(&mut self.cmd(&args), &what, bound)?;
        // The secrets it generated and printed are hidden before any of
        // its output can be logged: a failed call's error quotes its tail.
        let learned = crate::redact::add(
            crate::redact::generated_secrets(&out.stdout)
                .into_iter()
                .chain(crate::redact::generated_secrets(&out.stderr)),
        );
        if learned > 0 {
            crate::say!("{learned} generated secret(s) hidden from the output from here on");
        }
        ext::check_ok(out, &what).map(drop)
    }

    /// `abra app deploy DOMAIN [VERSION] [-C] [-f] -D -c -n`: `-D` skips the
    /// DNS check (test domains do not resolve), `-c` skips abra's own short
    /// converge window; cc-ci-run waits for convergence itself.
    pub(crate) fn deploy(
        &self,
        domain: &str,
        version: Option<&str>,
        chaos: bool,
        force: bool,
        bound: &Bound,
    ) -> Result<()> {
        let mut args = vec!["app", "deploy", domain];
        args.extend(version);
        if chaos {
            args.push("-C");
        }
        if force {
            args.push("-f");
        }
        args.extend(["-D", "-c", "-n"]);
        self.call(&args, bound).map(drop)
    }

    /// `abra app undeploy DOMAIN -n`; may return before the stack is gone.
    pub(crate) fn undeploy(&self, domain: &str, bound: &Bound) -> Result<()> {
        self.call(&["app", "undeploy", domain, "-n"], bound)
            .map(drop)
    }

    /// `abra app rm DOMAIN -f -n`: volumes, secrets and the env file.
    pub(crate) fn rm(&self, domain: &str, bound: &Bound) -> Result<(), RmError> {
        let args = ["app", "rm", domain, "-f", "-n"];
        let what = format!("abra {}", args.join(" "));
        crate::say!("$ {what}");
        let out = ext::run(&mut self.cmd(&args), &what, bound).map_err(RmError::Other)?;
        if out.status.success() {
            return Ok(());
        }
        let said = ext::tail(&out.stderr, &out.stdout);
        let e = anyhow::anyhow!("{what} failed ({}): {said}", out.status);
        if crate::ext::docker::says_in_use(&said) {
            Err(RmError::VolumeInUse(e))
        } else {
            Err(RmError::Other(e))
        }
    }

    /// `abra app backup create DOMAIN -n`
    pub(crate) fn backup(&self, domain: &str, bound: &Bound) -> Result<()> {
        self.call(&["app", "backup", "create", domain, "-n"], bound)
            .map(drop)
    }

    /// `abra app restore DOMAIN -n`
    pub(crate) fn restore(&self, domain: &str, bound: &Bound) -> Result<()> {
        self.call(&["app", "restore", domain, "-n"], bound)
            .map(drop)
    }

    /// The directory abra keeps one server's env files in.
    pub(crate) fn server_dir(&self, server: &str) -> PathBuf {
        server_dir(&self.abra_dir, server)
    }

    /// The app's env file, where abra keeps it.
    pub(crate) fn env_file(&self, server: &str, domain: &str) -> PathBuf {
        self.server_dir(server).join(format!("{domain}.env"))
    }
}

/// `$ABRA_DIR/servers/SERVER` (SPEC section 9).
pub(crate) fn server_dir(abra_dir: &Path, server: &str) -> PathBuf {
    abra_dir.join("servers").join(server)
}

/// One server's apps, read from abra's own files.
#[derive(Debug, Default)]
pub(crate) struct ServerApps {
    /// The apps' domains, sorted.
    pub domains: Vec<String>,
    /// Entries abra would take for apps that cannot be handled (domain,
    /// why): a name that is not UTF-8 (the domain lossily), a symbolic
    /// link that leads nowhere, a FIFO or other special file (reading it
    /// could hang).
    pub odd: Vec<(String, String)>,
}

/// The apps of one server as `abra app ls -s SERVER` lists them, from one
/// readdir of `$ABRA_DIR/servers/SERVER/` instead of a process: abra keeps
/// each app as the file `DOMAIN.env` there and lists exactly those, so
/// this is its listing, without its start-up. What abra lists, and so
/// this: entries named `*.env` that are not dotfiles (see
/// [`parse::app_of_env_file`]) and not directories, a symbolic link
/// followed to what it names. Subdirectories, other files and dotfiles
/// are not apps and are passed over silently. The file
/// type comes from the directory entry itself (no stat per entry, except
/// for a symbolic link). A missing or unreadable directory is an error,
/// as abra's listing fails on it.
pub(crate) fn list_server_apps(abra_dir: &Path, server: &str) -> Result<ServerApps> {
    use std::os::unix::ffi::OsStrExt;
    let dir = server_dir(abra_dir, server);
    let failed = || format!("failed to read abra's server directory {}", dir.display());
    let mut out = ServerApps::default();
    for entry in std::fs::read_dir(&dir).with_context(failed)? {
        let entry = entry.with_context(failed)?;
        let raw = entry.file_name();
        let Some(name) = raw.to_str() else {
            let bytes = raw.as_bytes();
            if let Some(stem) = bytes.strip_suffix(b".env") {
                if !stem.is_empty() && !stem.starts_with(b".") {
                    out.odd.push((
                        String::from_utf8_lossy(stem).into_owned(),
                        "its name is not UTF-8".to_string(),
                    ));
                }
            }
            continue;
        };
        let Some(domain) = parse::app_of_env_file(name) else {
            continue;
        };
        let kind = match entry.file_type() {
            Ok(t) if t.is_symlink() => std::fs::metadata(entry.path()).map(|m| m.file_type()),
            other => other,
        };
        match kind {
            Ok(t) if t.is_dir() => continue,
            Ok(t) if t.is_file() => out.domains.push(domain.to_string()),
            Ok(_) => out
                .odd
                .push((domain.to_string(), "not a regular file".to_string())),
            Err(e) => out.odd.push((domain.to_string(), format!("{e}"))),
        }
    }
    out.domains.sort();
    Ok(out)
}

/// How `abra app rm` failed, where teardown branches on it.
#[derive(Debug)]
pub(crate) enum RmError {
    /// The engine still holds a volume: it lets go a moment after the last
    /// container went, so a retry within the bound is worth it.
    VolumeInUse(anyhow::Error),
    Other(anyhow::Error),
}

impl RmError {
    pub(crate) fn into_error(self) -> anyhow::Error {
        match self {
            RmError::VolumeInUse(e) | RmError::Other(e) => e,
        }
    }
}
