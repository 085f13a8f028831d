//! The run tree (SPEC section 3 step 3) as `__run-tree` makes it with the
//! run's own code, against what git makes: `git clone --shared
//! --no-checkout` of the canonical, `git fetch --tags` of the upstream's
//! branches and pull request, `git checkout`. Real git, real files: refs
//! packed and loose, annotated and lightweight tags, a canonical with
//! alternates of its own, one that lacks the pull request's objects (as a
//! network clone does), repositories this reader leaves to git (reftable,
//! extensions, a `.git` file), and runs side by side on one canonical.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::*;

/// git with nothing of the host's configuration.
fn git_cmd(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.arg("-C")
        .arg(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@ccci.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@ccci.invalid");
    c
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_cmd(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The example recipe: DIR/upstream.git and the canonical clone of it.
struct Recipe {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    upstream: PathBuf,
    canonical: PathBuf,
}

fn recipe() -> Recipe {
    let tmp = tempdir();
    let dir = tmp.path().join("recipe");
    let out = Command::new("bash")
        .arg(repo().join("scripts/make-example-recipe.sh"))
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Recipe {
        upstream: dir.join("upstream.git"),
        canonical: dir.join("abra-home/recipes/example"),
        dir,
        _tmp: tmp,
    }
}

/// `__run-tree` into DEST; its JSON line, or its output when it failed.
fn run_tree(canonical: &Path, dest: &Path, args: &[&str]) -> Result<serde_json::Value, Output> {
    let out = Command::new(bin())
        .arg("__run-tree")
        .arg("--canonical")
        .arg(canonical)
        .arg("--dest")
        .arg(dest)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(out);
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

fn ok(canonical: &Path, dest: &Path, args: &[&str]) -> serde_json::Value {
    run_tree(canonical, dest, args).unwrap_or_else(|o| {
        panic!(
            "__run-tree {args:?} failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// What git says of a tree: every ref (object, type, peeled, symref), the
/// tags, HEAD, its local config, and whether every object is reachable.
fn describe(tree: &Path) -> String {
    let refs = git(
        tree,
        &[
            "for-each-ref",
            "--format=%(refname) %(objectname) %(objecttype) %(*objectname) %(symref)",
        ],
    );
    let fsck = git_cmd(tree)
        .args(["fsck", "--connectivity-only", "--no-dangling"])
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "fsck in {}: {}",
        tree.display(),
        String::from_utf8_lossy(&fsck.stderr)
    );
    format!(
        "refs:\n{refs}\ntags:\n{}\nHEAD {}\nstatus:{}\nconfig:\n{}\nlog:\n{}",
        git(tree, &["tag", "-l"]),
        git(tree, &["rev-parse", "HEAD"]),
        git(tree, &["status", "--porcelain"]),
        git(tree, &["config", "--local", "-l"]),
        git(tree, &["log", "--format=%H %s", "-n", "5"]),
    )
}

/// git's own tree for the same request, as the run made it before
/// (`__run-tree --git-only` starts exactly those git commands).
fn reference(canonical: &Path, dest: &Path, args: &[&str]) -> serde_json::Value {
    let mut with = args.to_vec();
    with.push("--git-only");
    let v = ok(canonical, dest, &with);
    assert_eq!(v["in_process"], false);
    v
}

/// Compares the tree and its answer with git's, for each request.
fn same_as_git(r: &Recipe, canonical: &Path, label: &str, want_in_process: bool) {
    let requests: &[&[&str]] = &[
        &["--pr", "1"],
        &[],
        &["--ref", "1.1.0+1.0"],
        &["--ref", "1.0.0+1.0"],
        &["--ref", "main"],
        &["--ref", "light"],
    ];
    let work = r.dir.join(format!("trees-{label}"));
    for (i, args) in requests.iter().enumerate() {
        let (ours, theirs) = (
            work.join(format!("ours-{i}")),
            work.join(format!("git-{i}")),
        );
        let mine = ok(canonical, &ours, args);
        let want = reference(canonical, &theirs, args);
        assert_eq!(mine["in_process"], want_in_process, "{label} {args:?}");
        assert_eq!(
            (&mine["sha"], &mine["merged"], &mine["at"]),
            (&want["sha"], &want["merged"], &want["at"]),
            "{label} {args:?}"
        );
        assert_eq!(
            describe(&ours).replace(&ours.display().to_string(), "TREE"),
            describe(&theirs).replace(&theirs.display().to_string(), "TREE"),
            "{label} {args:?}: the trees differ"
        );
    }
}

/// A lightweight tag beside the annotated releases, on the upstream.
fn add_lightweight_tag(r: &Recipe) {
    git(&r.upstream, &["tag", "light", "refs/pull/1/head"]);
}

#[test]
fn run_tree_matches_gits_clone_and_fetch_with_the_example_recipe() {
    let r = recipe();
    add_lightweight_tag(&r);
    same_as_git(&r, &r.canonical, "example", true);
}

#[test]
fn run_tree_matches_gits_with_every_ref_packed_or_every_ref_loose() {
    let r = recipe();
    add_lightweight_tag(&r);
    git(&r.canonical, &["tag", "canon-light", "HEAD~1"]);
    git(
        &r.canonical,
        &["tag", "-a", "-m", "x", "canon-annotated", "HEAD"],
    );
    // Packed: git pack-refs --all on both sides.
    git(&r.canonical, &["pack-refs", "--all"]);
    git(&r.upstream, &["pack-refs", "--all"]);
    assert!(!r.canonical.join(".git/refs/heads/main").exists());
    same_as_git(&r, &r.canonical, "packed", true);
    // Loose: every ref a file, no packed-refs (nothing says what peels).
    for repo in [r.canonical.join(".git"), r.upstream.clone()] {
        let list = git(
            &repo,
            &["for-each-ref", "--format=%(objectname) %(refname)"],
        );
        for line in list.lines() {
            let (oid, name) = line.split_once(' ').unwrap();
            let file = repo.join(name);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, format!("{oid}\n")).unwrap();
        }
        std::fs::remove_file(repo.join("packed-refs")).unwrap();
    }
    same_as_git(&r, &r.canonical, "loose", true);
}

#[test]
fn run_tree_reads_the_pull_requests_objects_from_the_upstream_a_network_clone_lacks() {
    // abra's clone comes over the network: the canonical holds what its
    // branches and tags reach, never the pull request's commits.
    let r = recipe();
    let canonical = r.dir.join("net-clone");
    git(
        &r.dir,
        &[
            "clone",
            "-q",
            "--no-local",
            &r.upstream.display().to_string(),
            &canonical.display().to_string(),
        ],
    );
    let pr = git(&r.upstream, &["rev-parse", "refs/pull/1/head"]);
    let probe = git_cmd(&canonical)
        .args(["cat-file", "-e", &pr])
        .output()
        .unwrap();
    assert!(
        !probe.status.success(),
        "the canonical has the pull request's commit"
    );
    // Tagged on the upstream after the clone: its objects are there only.
    add_lightweight_tag(&r);
    same_as_git(&r, &canonical, "net", true);
    let dest = r.dir.join("net-tree");
    let v = ok(&canonical, &dest, &["--pr", "1"]);
    assert_eq!(v["sha"], pr.as_str());
    let alternates = std::fs::read_to_string(dest.join(".git/objects/info/alternates")).unwrap();
    assert_eq!(
        alternates,
        format!(
            "{}/.git/objects\n{}/objects\n",
            canonical.display(),
            r.upstream.display()
        )
    );
    // A commit of the pull request by its full sha (Drone's --pr --ref).
    let older = git(&r.upstream, &["rev-parse", "refs/pull/1/head~1"]);
    let v = ok(
        &canonical,
        &r.dir.join("net-older"),
        &["--pr", "1", "--ref", &older],
    );
    assert_eq!(v["sha"], older.as_str());
    assert_eq!(v["in_process"], true);
}

#[test]
fn run_tree_works_from_a_canonical_that_borrows_its_own_objects() {
    let r = recipe();
    let canonical = r.dir.join("shared-clone");
    git(
        &r.dir,
        &[
            "clone",
            "-q",
            "--shared",
            &r.upstream.display().to_string(),
            &canonical.display().to_string(),
        ],
    );
    assert!(canonical.join(".git/objects/info/alternates").exists());
    add_lightweight_tag(&r);
    same_as_git(&r, &canonical, "alternates", true);
}

#[test]
fn repositories_this_reader_does_not_know_are_left_to_git_and_still_work() {
    let r = recipe();
    let up = r.upstream.display().to_string();
    let mut cases: Vec<(&str, PathBuf)> = Vec::new();
    // A canonical with an extension in its config.
    let ext = r.dir.join("ext");
    git(&r.dir, &["clone", "-q", &up, &ext.display().to_string()]);
    git(&ext, &["config", "core.repositoryformatversion", "1"]);
    git(&ext, &["config", "extensions.worktreeConfig", "true"]);
    cases.push(("extensions", ext));
    // A canonical that is a worktree of another (its .git is a file).
    let wt = r.dir.join("worktree");
    git(
        &r.canonical,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "wt",
            &wt.display().to_string(),
            "main",
        ],
    );
    cases.push(("worktree", wt));
    // A canonical whose refs are a reftable (git 2.45 and later).
    let rt = r.dir.join("reftable");
    let made = git_cmd(&r.dir)
        .args([
            "clone",
            "-q",
            "--ref-format=reftable",
            &up,
            &rt.display().to_string(),
        ])
        .output()
        .unwrap();
    if made.status.success() {
        cases.push(("reftable", rt));
    } else {
        eprintln!(
            "this git cannot make a reftable repository: {}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    for (label, canonical) in cases {
        let mine = ok(
            &canonical,
            &r.dir.join(format!("{label}-ours")),
            &["--pr", "1"],
        );
        let want = reference(
            &canonical,
            &r.dir.join(format!("{label}-git")),
            &["--pr", "1"],
        );
        assert_eq!(mine["in_process"], false, "{label}");
        assert_eq!(mine["sha"], want["sha"], "{label}");
        assert_eq!(mine["merged"], want["merged"], "{label}");
    }
}

#[test]
fn a_tag_the_canonical_holds_with_another_value_fails_as_gits_fetch_does() {
    let r = recipe();
    // The canonical's 1.0.0+1.0 moved to main: `fetch --tags` refuses to
    // clobber it, and the run fails the same way either way.
    git(&r.canonical, &["tag", "-f", "1.0.0+1.0", "main"]);
    let ours = run_tree(&r.canonical, &r.dir.join("ours"), &["--pr", "1"]).unwrap_err();
    let theirs = run_tree(
        &r.canonical,
        &r.dir.join("git"),
        &["--pr", "1", "--git-only"],
    )
    .unwrap_err();
    assert_eq!(ours.status.code(), theirs.status.code());
    assert_eq!(ours.status.code(), Some(3));
    let err = String::from_utf8_lossy(&ours.stderr);
    assert!(
        err.contains("disagree on refs/tags/1.0.0+1.0")
            && err.contains("failed to fetch the recipe"),
        "{err}"
    );
}

#[test]
fn a_ref_that_names_no_commit_falls_through_to_the_next_candidate_as_rev_parse_does() {
    let r = recipe();
    // Upstream tag `odd` names a tree; the canonical has a branch `odd`.
    // rev-parse skips refs/tags/odd (no commit) and `odd` (the same tag)
    // and takes refs/remotes/origin/odd.
    let tree = git(&r.upstream, &["rev-parse", "main^{tree}"]);
    git(&r.upstream, &["tag", "odd", &tree]);
    git(&r.canonical, &["branch", "odd", "main~1"]);
    let mine = ok(&r.canonical, &r.dir.join("ours"), &["--ref", "odd"]);
    let want = reference(&r.canonical, &r.dir.join("git"), &["--ref", "odd"]);
    assert_eq!(mine["sha"], want["sha"]);
    assert_eq!(
        mine["sha"],
        git(&r.canonical, &["rev-parse", "main~1"]).as_str()
    );
    // An abbreviated sha is for git to find.
    let short = &git(&r.upstream, &["rev-parse", "main~1"])[..10];
    let mine = ok(&r.canonical, &r.dir.join("short"), &["--ref", short]);
    assert_eq!(mine["sha"], want["sha"]);
    // A ref that exists nowhere: the same error as git's.
    let ours = run_tree(&r.canonical, &r.dir.join("none"), &["--ref", "nope"]).unwrap_err();
    let err = String::from_utf8_lossy(&ours.stderr);
    assert!(
        err.contains("the ref under test (nope) was not found"),
        "{err}"
    );
}

#[test]
fn concurrent_run_trees_on_one_canonical_do_not_interfere() {
    let r = recipe();
    let before = describe(&r.canonical);
    let pr = git(&r.upstream, &["rev-parse", "refs/pull/1/head"]);
    let main = git(&r.upstream, &["rev-parse", "main"]);
    let children: Vec<_> = (0..8)
        .map(|i| {
            let mut c = Command::new(bin());
            c.arg("__run-tree")
                .arg("--canonical")
                .arg(&r.canonical)
                .arg("--dest")
                .arg(r.dir.join(format!("run-{i}")))
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null");
            if i % 2 == 0 {
                c.args(["--pr", "1"]);
            }
            c.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let want = if i % 2 == 0 { &pr } else { &main };
        assert_eq!(v["sha"], want.as_str(), "run {i}");
        let tree = r.dir.join(format!("run-{i}"));
        assert_eq!(git(&tree, &["rev-parse", "HEAD"]), *want);
        assert_eq!(git(&tree, &["status", "--porcelain"]), "");
    }
    // Each tree moves on its own; the canonical never moves.
    git(
        &r.dir.join("run-0"),
        &["checkout", "-q", "--detach", "1.0.0+1.0"],
    );
    assert_eq!(git(&r.dir.join("run-1"), &["rev-parse", "HEAD"]), main);
    assert_eq!(describe(&r.canonical), before);
}
