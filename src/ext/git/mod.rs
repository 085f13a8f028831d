//! The run's own recipe checkout (SPEC section 3 step 3): a local clone of
//! the canonical recipe repository that shares its objects (`--shared`, no
//! history copied), then the ref under test fetched and checked out. Every
//! git call is bounded and interruptible like any external command. The
//! tree can also be written without git (`tree`, from the refs as `refs`
//! reads them): `run::fetch` decides.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::ext::{self, Bound};

pub mod refs;
pub(crate) mod tree;

/// git on one repository.
#[derive(Clone, Debug)]
pub(crate) struct Repo {
    bin: OsString,
    dir: PathBuf,
    abra_dir: PathBuf,
}

impl Repo {
    pub(crate) fn new(bin: &OsString, dir: &Path, abra_dir: &Path) -> Repo {
        Repo {
            bin: bin.clone(),
            dir: dir.to_path_buf(),
            abra_dir: abra_dir.to_path_buf(),
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("-C")
            .arg(&self.dir)
            .args(args)
            .env("ABRA_DIR", &self.abra_dir)
            .env("GIT_TERMINAL_PROMPT", "0");
        c
    }

    /// Runs git and returns its trimmed stdout; non-zero is an error.
    pub(crate) fn git(&self, args: &[&str], bound: &Bound) -> Result<String> {
        let what = format!("git {}", args.join(" "));
        Ok(ext::run_ok(&mut self.cmd(args), &what, bound)?
            .stdout
            .trim()
            .to_string())
    }

    /// Runs git; None when it exits non-zero (a lookup that found nothing).
    pub(crate) fn try_git(&self, args: &[&str], bound: &Bound) -> Result<Option<String>> {
        let what = format!("git {}", args.join(" "));
        let out = ext::run(&mut self.cmd(args), &what, bound)?;
        Ok(out.status.success().then(|| out.stdout.trim().to_string()))
    }

    /// `git clone --shared --no-checkout CANONICAL DEST`: objects are
    /// borrowed through alternates, so the cost does not grow with history.
    pub(crate) fn clone_shared(
        bin: &OsString,
        canonical: &Path,
        dest: &Path,
        abra_dir: &Path,
        bound: &Bound,
    ) -> Result<Repo> {
        let mut c = Command::new(bin);
        c.args(["clone", "--quiet", "--shared", "--no-checkout"])
            .arg(canonical)
            .arg(dest)
            .env("ABRA_DIR", abra_dir)
            .env("GIT_TERMINAL_PROMPT", "0");
        ext::run_ok(&mut c, "git clone --shared", bound).with_context(|| {
            format!("failed to clone {} into the run tree", canonical.display())
        })?;
        Ok(Repo::new(bin, dest, abra_dir))
    }

    /// The full sha `spec` names, if it names a commit.
    pub(crate) fn resolve(&self, spec: &str, bound: &Bound) -> Result<Option<String>> {
        self.try_git(
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                &format!("{spec}^{{commit}}"),
            ],
            bound,
        )
    }

    /// Tags reachable from `sha`, and tags pointing at `sha` itself.
    pub(crate) fn tags(&self, sha: &str, bound: &Bound) -> Result<(Vec<String>, Vec<String>)> {
        // One process for what `tag --merged` and `tag --points-at` would
        // say: the tags reachable from SHA, each with the object it names
        // and (an annotated tag) the commit it peels to, in refname order.
        let merged = format!("--merged={sha}");
        let out = self.git(
            &[
                "for-each-ref",
                &merged,
                "--format=%(objectname) %(*objectname) %(refname:strip=2)",
                "refs/tags/",
            ],
            bound,
        )?;
        Ok(parse_tags(&out, sha))
    }

    /// The object a detached HEAD names (after [`Repo::checkout`]), read
    /// from `.git/HEAD` as git writes it there.
    pub(crate) fn head_sha(&self) -> Result<String> {
        let path = self.dir.join(".git").join("HEAD");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("failed to read {}", path.display()))?;
        match refs::parse_loose(&text) {
            Some(refs::Loose::Object(oid)) => Ok(oid),
            _ => anyhow::bail!(
                "{} is not a detached HEAD: {:?}",
                path.display(),
                text.trim()
            ),
        }
    }

    pub(crate) fn checkout(&self, sha: &str, bound: &Bound) -> Result<()> {
        self.git(&["checkout", "--quiet", "--force", "--detach", sha], bound)
            .map(drop)
    }
}

/// `for-each-ref`'s lines `OBJECT PEELED NAME` (PEELED empty for a
/// lightweight tag) into (every tag, the tags on `sha`).
fn parse_tags(out: &str, sha: &str) -> (Vec<String>, Vec<String>) {
    let mut merged = Vec::new();
    let mut at = Vec::new();
    for line in out.lines() {
        let mut f = line.splitn(3, ' ');
        let (Some(object), Some(peeled), Some(name)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        if object == sha || peeled == sha {
            at.push(name.to_string());
        }
        merged.push(name.to_string());
    }
    (merged, at)
}
