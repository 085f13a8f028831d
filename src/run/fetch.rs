//! The run's recipe checkout (SPEC section 3 step 3): the run tree made
//! from the canonical recipe repository, the refs under test fetched, the
//! ref under test resolved and checked out, and the tags around it read.
//! One function for the run and for `__run-tree` (the benchmark and the
//! tests), so both measure and check the code a run uses.
//!
//! When the upstream is a local path and both repositories are plain, the
//! tree is written from their refs without starting git
//! (`ext::git::tree`) and the ref under test is looked up in those refs;
//! `git checkout` and `git for-each-ref` are then the only processes.
//! Otherwise, and whenever that lookup cannot decide, git does it as it
//! always did: `clone --shared`, `fetch`, `rev-parse` over the candidates.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Context, Result};

use crate::exit::Failure;
use crate::ext::git::refs::{self, Lookup};
use crate::ext::git::tree::{self, Built};
use crate::ext::git::Repo;
use crate::ext::{self, Bound};
use crate::rundir;
use crate::say;

/// What to check out, and where.
#[derive(Clone, Debug)]
pub(crate) struct Request<'a> {
    pub git: &'a OsString,
    pub canonical: &'a Path,
    pub dest: &'a Path,
    pub abra_dir: &'a Path,
    /// The directory `dest` lies in, proven before anything under it is
    /// removed (the state directory, for a run).
    pub root: &'a Path,
    pub skip_fetch: bool,
    pub pr: Option<u32>,
    pub git_ref: Option<&'a str>,
    /// The ref under test as the run names it, for the error that it was
    /// not found.
    pub shown_ref: &'a str,
    /// Only git, as before the in-process tree (tests compare the two).
    pub git_only: bool,
}

/// The checked-out tree.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub repo: Repo,
    pub sha: String,
    /// (every tag reachable from the sha, the tags on the sha itself).
    pub tags: (Vec<String>, Vec<String>),
    /// Whether the tree was written here (true) or cloned by git.
    pub in_process: bool,
}

/// Marks an error of this step as an infrastructure failure (exit 3),
/// as the run's `infra` does.
fn fetch_fail(e: anyhow::Error) -> anyhow::Error {
    e.context(Failure::of(
        crate::exit::INFRA,
        "fetching the recipe failed",
    ))
}

pub(crate) fn fetch(req: &Request, b: &Bound) -> Result<Fetched> {
    let built = if req.git_only {
        None
    } else {
        let plan = tree::Plan {
            canonical: req.canonical,
            dest: req.dest,
            skip_fetch: req.skip_fetch,
            pr: req.pr,
        };
        match tree::build(&plan).map_err(fetch_fail)? {
            Built::Tree(t) => Some(t),
            Built::Fallback { reason, touched } => {
                say!("run tree: cloned by git ({reason})");
                if touched {
                    rundir::remove_inside(req.root, req.dest).map_err(fetch_fail)?;
                }
                None
            }
        }
    };
    let repo = Repo::new(req.git, req.dest, req.abra_dir);
    let (default_branch, upstream) = match &built {
        Some(t) => (t.default_branch.clone(), t.upstream.clone()),
        None => clone_and_fetch(req, &repo, b)?,
    };
    let candidates: Vec<String> = match (req.pr, req.git_ref) {
        (Some(_), Some(r)) => vec![r.to_string()],
        (Some(_), None) => vec!["refs/ccci/pr".into()],
        (None, Some(r)) => vec![
            format!("refs/remotes/upstream/{r}"),
            format!("refs/tags/{r}"),
            r.to_string(),
            format!("refs/remotes/origin/{r}"),
        ],
        (None, None) => vec![
            format!("refs/remotes/upstream/{default_branch}"),
            format!("refs/remotes/origin/{default_branch}"),
        ],
    };
    // The tree's own refs answer first: the first candidate a ref (or a
    // full object name) matches is what `rev-parse` would pick too, unless
    // its object is no commit; then `git checkout` fails and git decides
    // from the start below, as it always did.
    if let Some(t) = &built {
        let mut found = None;
        for c in &candidates {
            match refs::lookup(&t.refs, &t.symrefs, c) {
                Lookup::Found(oid) => {
                    found = Some(oid);
                    break;
                }
                Lookup::Missing => continue,
                Lookup::AskGit => break,
            }
        }
        if let Some(oid) = found {
            match repo.checkout(&oid, b) {
                Ok(()) => {
                    // A tag's object was checked out as the commit it
                    // peels to: HEAD (detached) names that commit.
                    let sha = repo.head_sha()?;
                    let tags = repo.tags(&sha, b)?;
                    return Ok(Fetched {
                        repo,
                        sha,
                        tags,
                        in_process: true,
                    });
                }
                Err(e) if ext::is_interrupted(&e) || b.expired() => {
                    return Err(fetch_fail(e));
                }
                Err(e) => say!("run tree: {oid} is left to git ({e:#})"),
            }
        }
    }
    // `--pr N --ref SHA` (Drone's pull-request step): the build's own
    // commit, which Drone reports on, not whatever the pull request's
    // head is by now. A commit the head no longer reaches (a force-push
    // since) is asked for by itself, as far as the server allows.
    if let (Some(_), Some(r)) = (req.pr, req.git_ref) {
        if repo.resolve(r, b)?.is_none() && !req.skip_fetch {
            let _ = repo.try_git(&["fetch", "--quiet", "--", upstream.as_str(), r], b)?;
        }
    }
    let mut sha = None;
    for c in &candidates {
        if let Some(s) = repo.resolve(c, b)? {
            sha = Some(s);
            break;
        }
    }
    let sha = sha.ok_or_else(|| {
        Failure::infra(format!(
            "the ref under test ({}) was not found in the recipe repository",
            req.shown_ref
        ))
    })?;
    repo.checkout(&sha, b).map_err(fetch_fail)?;
    let tags = repo.tags(&sha, b)?;
    Ok(Fetched {
        repo,
        sha,
        tags,
        in_process: built.is_some(),
    })
}

/// The tree as git makes it: `clone --shared --no-checkout`, the
/// canonical's branch and origin, then the fetch of the refs under test.
/// Returns (the default branch, the upstream).
fn clone_and_fetch(req: &Request, repo: &Repo, b: &Bound) -> Result<(String, String)> {
    Repo::clone_shared(req.git, req.canonical, req.dest, req.abra_dir, b).map_err(fetch_fail)?;
    let canon = Repo::new(req.git, req.canonical, req.abra_dir);
    let default_branch = canon
        .try_git(&["symbolic-ref", "--quiet", "--short", "HEAD"], b)?
        .unwrap_or_else(|| "main".to_string());
    let upstream = if req.skip_fetch {
        req.canonical.display().to_string()
    } else {
        canon
            .try_git(&["remote", "get-url", "origin"], b)?
            .unwrap_or_else(|| req.canonical.display().to_string())
    };
    let mut refspecs = vec!["+refs/heads/*:refs/remotes/upstream/*".to_string()];
    if let Some(n) = req.pr {
        refspecs.push(format!("+refs/pull/{n}/head:refs/ccci/pr"));
    }
    if !req.skip_fetch || req.pr.is_some() {
        let mut args = vec!["fetch", "--quiet", "--tags", "--", upstream.as_str()];
        args.extend(refspecs.iter().map(String::as_str));
        repo.git(&args, b)
            .with_context(|| format!("failed to fetch the recipe from {upstream}"))
            .map_err(fetch_fail)?;
    }
    Ok((default_branch, upstream))
}
