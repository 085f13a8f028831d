//! The run's recipe checkout built without starting git (SPEC section 3
//! step 3): the `.git` that `git clone --shared --no-checkout CANONICAL`
//! followed by `git fetch --tags UPSTREAM +refs/heads/*:refs/remotes/upstream/*
//! [+refs/pull/N/head:refs/ccci/pr]` leaves, written from the two
//! repositories' refs when the upstream is a local path. Objects are
//! borrowed, never copied: `objects/info/alternates` names the canonical's
//! object directory and the upstream's, where a fetch would have copied
//! what the canonical lacks. A `git clone --shared` costs three processes
//! and the fetch five; this costs none, and reads no history, so it does
//! not grow with it.
//!
//! Only what is read here by git's rules is built here. Anything else (a
//! `.git` file, a repository format or extension this reader does not
//! know, a shallow repository, a repository owned by another user, a
//! remote URL that is not an absolute local path, a tag both sides hold
//! with different values, a missing pull-request ref) is
//! [`Built::Fallback`] with the reason, and the caller runs git as before:
//! the harness works either way, and git says whatever goes wrong.
//!
//! Safe for concurrent runs on one canonical: the canonical and the
//! upstream are only read; each run writes its own tree.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::refs::{self, Loose, Ref, RefMap};

/// What to build.
#[derive(Clone, Debug)]
pub(crate) struct Plan<'a> {
    pub canonical: &'a Path,
    pub dest: &'a Path,
    /// `CCCI_SKIP_FETCH=1`: the upstream is the canonical itself.
    pub skip_fetch: bool,
    pub pr: Option<u32>,
}

/// A tree built here, with what the run reads of it.
#[derive(Debug)]
pub(crate) struct Tree {
    /// The canonical's branch (`git symbolic-ref --short HEAD` there).
    pub default_branch: String,
    /// Where the refs under test came from (the canonical's origin).
    pub upstream: String,
    /// Every ref of the tree but the symbolic ones.
    pub refs: RefMap,
    /// The symbolic refs: HEAD and refs/remotes/origin/HEAD.
    pub symrefs: BTreeMap<String, String>,
}

#[derive(Debug)]
pub(crate) enum Built {
    Tree(Tree),
    /// Not built here, for this reason; `touched` when files were written
    /// under the destination before that was found (the caller removes
    /// them before git clones there).
    Fallback {
        reason: String,
        touched: bool,
    },
}

/// A reason not to build here; `?` inside [`build`] turns it into
/// [`Built::Fallback`].
struct Unsupported(String);

fn unsupported<T>(why: impl Into<String>) -> std::result::Result<T, Unsupported> {
    Err(Unsupported(why.into()))
}

/// One repository read as git's upload-pack would advertise it.
struct Source {
    git_dir: PathBuf,
    config: refs::RepoConfig,
    /// Refs under refs/heads/ and refs/tags/ (and any asked for by name).
    refs: RefMap,
    head: Option<Loose>,
}

/// Builds the run tree at `plan.dest`, or says why it must be git's.
/// An I/O error while writing the tree is an error (git would meet it
/// too); what this reader does not understand is a fallback.
pub(crate) fn build(plan: &Plan) -> Result<Built> {
    let mut touched = false;
    match try_build(plan, &mut touched) {
        Ok(Ok(tree)) => Ok(Built::Tree(tree)),
        Ok(Err(Unsupported(reason))) => Ok(Built::Fallback { reason, touched }),
        Err(e) => Err(e),
    }
}

type Step<T> = Result<std::result::Result<T, Unsupported>>;

macro_rules! check {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(u) => return Ok(Err(u)),
        }
    };
}

fn try_build(plan: &Plan, touched: &mut bool) -> Step<Tree> {
    let canonical = check!(absolute(plan.canonical));
    let canon = check!(open_worktree_repo(&canonical)?);
    // `git symbolic-ref --quiet --short HEAD` in the canonical: HEAD must
    // name a branch; shortened to NAME unless `NAME`, `refs/NAME` or
    // `refs/tags/NAME` also exists (`refs_shorten_unambiguous_ref`,
    // strict = 0: only the rules before `refs/heads/%s` are tried).
    let branch = match &canon.head {
        Some(Loose::Symbolic(t)) => match t.strip_prefix("refs/heads/") {
            Some(b) if canon.refs.contains_key(t.as_str()) => b.to_string(),
            _ => check!(unsupported(format!(
                "the canonical's HEAD names {t}, no existing branch"
            ))),
        },
        _ => check!(unsupported("the canonical's HEAD is detached")),
    };
    if canon.refs.contains_key(&format!("refs/tags/{branch}"))
        || exists(&canon.git_dir.join(&branch))?
        || exists(&canon.git_dir.join("refs").join(&branch))?
        || packed_has(&canon.git_dir, &format!("refs/{branch}"))?
    {
        check!(unsupported(format!(
            "the canonical's branch name {branch} is ambiguous"
        )));
    }
    let canonical_text = check!(utf8(canonical.as_os_str()));
    // `git remote get-url origin`, else the canonical itself.
    let upstream = if plan.skip_fetch {
        canonical_text.clone()
    } else {
        canon
            .config
            .origin_url
            .clone()
            .unwrap_or_else(|| canonical_text.clone())
    };
    let fetches = !plan.skip_fetch || plan.pr.is_some();
    let up = if fetches {
        let Some(path) = refs::local_path(&upstream) else {
            return Ok(Err(Unsupported(format!(
                "the upstream {upstream} is not an absolute local path"
            ))));
        };
        let pr_ref = plan.pr.map(|n| format!("refs/pull/{n}/head"));
        let up = check!(open_upstream(Path::new(path), pr_ref.as_deref())?);
        if let Some(r) = &pr_ref {
            if !up.refs.contains_key(r) {
                check!(unsupported(format!("the upstream has no {r}")));
            }
        }
        Some((up, pr_ref))
    } else {
        None
    };

    // The refs `clone` makes: the canonical's branches as origin's, its
    // tags, and its branch as a local one with origin/HEAD naming it.
    let mut out = RefMap::new();
    let mut symrefs = BTreeMap::new();
    for (name, r) in &canon.refs {
        if let Some(b) = name.strip_prefix("refs/heads/") {
            out.insert(format!("refs/remotes/origin/{b}"), r.clone());
        } else if name.starts_with("refs/tags/") {
            out.insert(name.clone(), r.clone());
        }
    }
    let head_ref = format!("refs/heads/{branch}");
    let local = canon.refs[&head_ref].clone();
    out.insert(head_ref.clone(), local.clone());
    symrefs.insert("HEAD".to_string(), head_ref.clone());
    let origin_head = format!("refs/remotes/origin/{branch}");
    symrefs.insert("refs/remotes/origin/HEAD".to_string(), origin_head.clone());
    // The refs the fetch adds: upstream's branches (forced), its tags
    // (never forced: a tag held with another value fails the fetch), the
    // pull request's head (forced).
    let mut alternates = vec![canon.git_dir.join("objects")];
    if let Some((up, pr_ref)) = &up {
        for (name, r) in &up.refs {
            if let Some(b) = name.strip_prefix("refs/heads/") {
                out.insert(format!("refs/remotes/upstream/{b}"), r.clone());
            } else if name.starts_with("refs/tags/") {
                match out.get(name) {
                    Some(had) if had.oid != r.oid => {
                        check!(unsupported(format!(
                            "the canonical and the upstream disagree on {name}"
                        )));
                    }
                    Some(_) => {}
                    None => {
                        out.insert(name.clone(), r.clone());
                    }
                }
            }
        }
        if let Some(r) = pr_ref {
            out.insert("refs/ccci/pr".to_string(), up.refs[r].clone());
        }
        let objects = up.git_dir.join("objects");
        if !alternates.contains(&objects) {
            alternates.push(objects);
        }
    }
    let mut alt_text = String::new();
    for a in &alternates {
        // One path a line; a path git would read as quoted or as a
        // comment (`"`, `#`) or that breaks the line is left to git.
        let t = check!(utf8(a.as_os_str()));
        if t.starts_with(['"', '#']) || t.contains('\n') {
            check!(unsupported(format!(
                "an alternate path git would unquote: {t}"
            )));
        }
        alt_text.push_str(&t);
        alt_text.push('\n');
    }

    // `git clone` refuses a destination that is not an empty directory.
    match std::fs::read_dir(plan.dest) {
        Ok(mut d) => {
            if d.next().is_some() {
                check!(unsupported(format!(
                    "{} exists and is not empty",
                    plan.dest.display()
                )));
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("failed to read {}", plan.dest.display())),
    }

    *touched = true;
    let git = plan.dest.join(".git");
    for d in [
        "objects/info",
        "objects/pack",
        "refs/heads",
        "refs/tags",
        "refs/remotes/origin",
    ] {
        mkdir(&git.join(d))?;
    }
    write(
        &git.join("config"),
        &refs::clone_config(&canonical_text, &branch),
    )?;
    // `git init`'s probes (`create_default_files`): whether chmod changes
    // the executable bit, and whether names are case-insensitive. Where
    // they would write another core setting, git builds the tree.
    if !filemode_works(&git.join("config"))? {
        check!(unsupported("the filesystem keeps no executable bit"));
    }
    if exists(&git.join("CoNfIg"))? {
        check!(unsupported("the filesystem's names are case-insensitive"));
    }
    write(&git.join("HEAD"), &format!("ref: {head_ref}\n"))?;
    write(&git.join("objects/info/alternates"), &alt_text)?;
    let mut packed = out.clone();
    packed.remove(&head_ref);
    write(&git.join("packed-refs"), &refs::render_packed_refs(&packed))?;
    // The two refs clone writes loose: the local branch, and the symbolic
    // origin/HEAD (a symbolic ref cannot be packed).
    let local_file = git.join(&head_ref);
    if let Some(parent) = local_file.parent() {
        mkdir(parent)?;
    }
    write(&local_file, &format!("{}\n", local.oid))?;
    write(
        &git.join("refs/remotes/origin/HEAD"),
        &format!("ref: {origin_head}\n"),
    )?;
    Ok(Ok(Tree {
        default_branch: branch,
        upstream,
        refs: out,
        symrefs,
    }))
}

/// The canonical: a work tree whose `.git` is a directory.
fn open_worktree_repo(dir: &Path) -> Step<Source> {
    let git_dir = dir.join(".git");
    let meta = std::fs::symlink_metadata(&git_dir)
        .with_context(|| format!("failed to stat {}", git_dir.display()))?;
    if !meta.is_dir() {
        return Ok(unsupported(format!(
            "{} is not a directory (a worktree or a submodule's)",
            git_dir.display()
        )));
    }
    check!(owned(dir)?);
    // Clone reads `.git/remotes/origin` and `.git/branches/origin` too,
    // the remotes of old gits.
    for legacy in ["remotes/origin", "branches/origin"] {
        if exists(&git_dir.join(legacy))? {
            return Ok(unsupported(format!("the canonical has .git/{legacy}")));
        }
    }
    let src = check!(open_git_dir(git_dir, &["refs/heads/", "refs/tags/"], &[])?);
    if src.config.indirect {
        return Ok(unsupported(
            "the canonical's config includes files or rewrites URLs",
        ));
    }
    Ok(Ok(src))
}

/// The upstream at a local path, found as upload-pack finds it
/// (`enter_repo`, not strict: PATH/.git, PATH, PATH.git/.git, PATH.git,
/// the first that is a regular file (a `.git` file: left to git) or a
/// directory git accepts as a repository).
fn open_upstream(path: &Path, pr_ref: Option<&str>) -> Step<Source> {
    let text = path.as_os_str().as_bytes();
    for suffix in ["/.git", "", ".git/.git", ".git"] {
        let mut p = text.to_vec();
        p.extend_from_slice(suffix.as_bytes());
        let candidate = PathBuf::from(OsStr::from_bytes(&p));
        let meta = match std::fs::metadata(&candidate) {
            Ok(m) => m,
            Err(_) => continue,
        };
        if meta.is_file() {
            return Ok(unsupported(format!(
                "the upstream {} is a .git file",
                candidate.display()
            )));
        }
        if meta.is_dir() && is_git_directory(&candidate)? {
            if suffix.ends_with("/.git") {
                // A work tree's repository: its owner counts too.
                let work = candidate.parent().unwrap_or(&candidate).to_path_buf();
                check!(owned(&work)?);
            }
            let singles: Vec<&str> = pr_ref.into_iter().collect();
            let src = check!(open_git_dir(
                candidate,
                &["refs/heads/", "refs/tags/"],
                &singles
            )?);
            if src.config.hides_refs {
                return Ok(unsupported("the upstream hides refs from fetches"));
            }
            return Ok(Ok(src));
        }
    }
    Ok(unsupported(format!(
        "no repository at the upstream {}",
        path.display()
    )))
}

/// `is_git_directory`: an `objects` and a `refs` directory and a HEAD.
fn is_git_directory(dir: &Path) -> Result<bool> {
    Ok(
        std::fs::metadata(dir.join("objects")).is_ok_and(|m| m.is_dir())
            && std::fs::metadata(dir.join("refs")).is_ok_and(|m| m.is_dir())
            && std::fs::metadata(dir.join("HEAD")).is_ok_and(|m| m.is_file()),
    )
}

/// A git directory's format, HEAD and the refs under `prefixes` (and the
/// `singles`, by full name), read as the files backend does.
fn open_git_dir(git_dir: PathBuf, prefixes: &[&str], singles: &[&str]) -> Step<Source> {
    check!(owned(&git_dir)?);
    for f in ["commondir", "shallow", "objects/info/grafts"] {
        if exists(&git_dir.join(f))? {
            return Ok(unsupported(format!("{} has {f}", git_dir.display())));
        }
    }
    let config_path = git_dir.join("config");
    let config = match std::fs::read_to_string(&config_path) {
        Ok(t) => match refs::parse_config(&t) {
            Ok(c) => c,
            Err(e) => {
                return Ok(unsupported(format!(
                    "{} is not read here: {e}",
                    config_path.display()
                )))
            }
        },
        Err(e) if e.kind() == ErrorKind::NotFound => refs::RepoConfig::default(),
        Err(e) => return Ok(unsupported(format!("{}: {e}", config_path.display()))),
    };
    if !config.plain() {
        return Ok(unsupported(format!(
            "{} uses a repository format or extension (reftable, sha256, ...) left to git",
            git_dir.display()
        )));
    }
    // Loose refs first, `packed-refs` after: `git pack-refs` writes the
    // packed file before it deletes the loose ones, so in this order a ref
    // being packed meanwhile is seen at least once (files-backend's order).
    let mut loose = RefMap::new();
    for p in prefixes {
        check!(read_loose_dir(&git_dir, p, &mut loose)?);
    }
    for s in singles {
        if let Some(r) = check!(read_loose_file(&git_dir, s)?) {
            loose.insert(s.to_string(), r);
        }
    }
    let packed = check!(read_packed(&git_dir)?);
    let mut all = RefMap::new();
    for (name, r) in packed {
        if prefixes.iter().any(|p| name.starts_with(p)) || singles.contains(&name.as_str()) {
            all.insert(name, r);
        }
    }
    all.extend(loose);
    let head_path = git_dir.join("HEAD");
    let head = std::fs::read_to_string(&head_path)
        .ok()
        .and_then(|t| refs::parse_loose(&t));
    Ok(Ok(Source {
        git_dir,
        config,
        refs: all,
        head,
    }))
}

/// The loose refs under `prefix` (`loose_fill_ref_dir`): names starting
/// with `.` and ending with `.lock` are skipped; a ref file with a bad
/// name, a symbolic ref or a symlink there is left to git.
fn read_loose_dir(git_dir: &Path, prefix: &str, out: &mut RefMap) -> Step<()> {
    let dir = git_dir.join(prefix.trim_end_matches('/'));
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Ok(())),
        Err(e) => return Err(e).with_context(|| format!("failed to read {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("failed to read {}", dir.display()))?;
        let name = entry.file_name();
        let name = check!(utf8(&name));
        if name.starts_with('.') || name.ends_with(".lock") {
            continue;
        }
        let full = format!("{prefix}{name}");
        let kind = entry
            .file_type()
            .with_context(|| format!("failed to stat {}", entry.path().display()))?;
        if kind.is_dir() {
            check!(read_loose_dir(git_dir, &format!("{full}/"), out)?);
        } else if kind.is_file() {
            if let Some(r) = check!(read_loose_file(git_dir, &full)?) {
                out.insert(full, r);
            }
        } else {
            return Ok(unsupported(format!("{full} is a symlink or special file")));
        }
    }
    Ok(Ok(()))
}

/// One loose ref file, if it exists.
fn read_loose_file(git_dir: &Path, name: &str) -> Step<Option<Ref>> {
    if !refs::check_refname(name) {
        return Ok(unsupported(format!("a ref with a bad name: {name}")));
    }
    let path = git_dir.join(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Ok(None)),
        // A directory where a ref was asked for by name: no such ref.
        Err(e) if e.kind() == ErrorKind::IsADirectory => return Ok(Ok(None)),
        Err(e) => return Err(e).with_context(|| format!("failed to read ref {}", path.display())),
    };
    match refs::parse_loose(&text) {
        Some(Loose::Object(oid)) => Ok(Ok(Some(Ref {
            oid,
            peeled: refs::Peeled::Unknown,
        }))),
        Some(Loose::Symbolic(t)) => Ok(unsupported(format!("{name} is a symbolic ref to {t}"))),
        None => Ok(unsupported(format!("{name} is a broken ref"))),
    }
}

fn read_packed(git_dir: &Path) -> Step<RefMap> {
    let path = git_dir.join("packed-refs");
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(refs::parse_packed_refs(&t).map_err(Unsupported)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Ok(RefMap::new())),
        Err(e) => Err(e).with_context(|| format!("failed to read {}", path.display())),
    }
}

fn packed_has(git_dir: &Path, name: &str) -> Result<bool> {
    let path = git_dir.join("packed-refs");
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(t
            .lines()
            .any(|l| l.split_once(' ').is_some_and(|(_, n)| n == name))),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("failed to read {}", path.display())),
    }
}

/// git refuses a repository owned by another user unless
/// `safe.directory` says otherwise (`ensure_valid_ownership`); that
/// decision is git's.
fn owned(path: &Path) -> Result<std::result::Result<(), Unsupported>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("failed to stat {}", path.display()))?;
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Ok(unsupported(format!(
            "{} is owned by another user (git's safe.directory decides)",
            path.display()
        )));
    }
    Ok(Ok(()))
}

/// `path` made absolute as git makes a clone's source (`absolute_path`:
/// the current directory joined, nothing resolved).
fn absolute(path: &Path) -> std::result::Result<PathBuf, Unsupported> {
    std::path::absolute(path).map_err(|e| Unsupported(format!("{}: {e}", path.display())))
}

fn utf8(s: &OsStr) -> std::result::Result<String, Unsupported> {
    s.to_str()
        .map(str::to_string)
        .ok_or_else(|| Unsupported(format!("{} is not UTF-8", s.to_string_lossy())))
}

fn exists(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) if e.kind() == ErrorKind::NotADirectory => Ok(false),
        Err(e) => Err(e).with_context(|| format!("failed to stat {}", path.display())),
    }
}

fn mkdir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("failed to write {}", path.display()))
}

/// `git init`'s filemode probe: flipping the owner's executable bit
/// sticks, and it can be flipped back.
fn filemode_works(path: &Path) -> Result<bool> {
    let before = std::fs::symlink_metadata(path)
        .with_context(|| format!("failed to stat {}", path.display()))?
        .permissions()
        .mode();
    let flipped = std::fs::Permissions::from_mode(before ^ 0o100);
    if std::fs::set_permissions(path, flipped).is_err() {
        return Ok(false);
    }
    let after = std::fs::symlink_metadata(path)
        .with_context(|| format!("failed to stat {}", path.display()))?
        .permissions()
        .mode();
    let restored = std::fs::set_permissions(path, std::fs::Permissions::from_mode(before)).is_ok();
    Ok(after != before && restored && before & 0o100 == 0)
}
