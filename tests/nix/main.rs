//! The `.nix` parse check (`scripts/check-nix.sh`): every `.nix` file of
//! the repository parses, and a broken copy fails. Needs `nix-instantiate`
//! (Debian's `nix-bin`), which the README's test command does not list, so
//! this is a target of its own: built only with `--features nix-tests`;
//! `.ci/run` installs nix-bin and runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../concurrency/support.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use support::{code, repo, tempdir};

/// `scripts/check-nix.sh [DIR]`, with its exit code and output.
fn check_nix(dir: Option<&Path>) -> (i32, String) {
    assert!(
        Command::new("sh")
            .args(["-c", "command -v nix-instantiate"])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success(),
        "nix-instantiate is missing: apt-get install -y nix-bin (.ci/run does)"
    );
    let mut c = Command::new("bash");
    c.arg(repo().join("scripts/check-nix.sh"));
    if let Some(d) = dir {
        c.arg(d);
    }
    let out = c.stdin(Stdio::null()).output().unwrap();
    (
        code(out.status),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

const NIX_FILES: [&str; 4] = [
    "flake.nix",
    "nix/package.nix",
    "nix/module.nix",
    "nix/shell.nix",
];

#[test]
fn every_nix_file_parses() {
    let (status, out) = check_nix(None);
    assert_eq!(status, 0, "{out}");
    for f in NIX_FILES {
        assert!(
            out.contains(&format!("ok    {f}\n")),
            "{f} not checked:\n{out}"
        );
    }
}

#[test]
fn nix_check_fails_on_a_broken_copy() {
    let tmp = tempdir();
    std::fs::create_dir(tmp.path().join("nix")).unwrap();
    for f in NIX_FILES {
        std::fs::copy(repo().join(f), tmp.path().join(f)).unwrap();
    }
    let (status, out) = check_nix(Some(tmp.path()));
    assert_eq!(status, 0, "the intact copy parses:\n{out}");

    let module = tmp.path().join("nix/module.nix");
    let text = std::fs::read_to_string(&module).unwrap();
    // A syntax error (the module's closing brace gone) and an unbound name
    // (a typo of a function in scope) each fail the check.
    let broken = [
        text.trim_end().strip_suffix('}').unwrap().to_string(),
        text.replacen("mkOption {", "mkOptoin {", 1),
    ];
    for b in broken {
        assert_ne!(b, text);
        std::fs::write(&module, &b).unwrap();
        let (status, out) = check_nix(Some(tmp.path()));
        assert_eq!(status, 1, "a broken module.nix passes:\n{out}");
        assert!(out.contains("FAIL  nix/module.nix"), "{out}");
    }

    let empty = tempdir();
    assert_eq!(check_nix(Some(empty.path())).0, 1, "no .nix file at all");
}
