//! git's files as `ext::git::refs` reads them: each expected value is what
//! git itself does with that text (the rule is cited; the tree tests in
//! tests/concurrency/runtree.rs compare whole trees against git's).

use std::collections::BTreeMap;

use cc_ci_run::ext::git::refs::{
    self, check_refname, local_path, lookup, parse_config, parse_loose, parse_packed_refs, Lookup,
    Loose, Peeled, Ref, RefMap,
};

const A: &str = "0455dfb0dcc06988ad585052fbccba3877e3f483";
const B: &str = "7a5c9c9311969acf47c8fcabc8882ab8f842e2d3";
const C: &str = "fa7f6ef07a2788472feece54aca2f21a1530e60e";

#[test]
fn loose_ref_contents_are_read_as_git_does() {
    // refs/files-backend.c, parse_loose_ref_contents.
    let cases: &[(&str, Option<Loose>)] = &[
        (&format!("{A}\n"), Some(Loose::Object(A.into()))),
        (A, Some(Loose::Object(A.into()))),
        (
            &format!("{}\n", A.to_uppercase()),
            Some(Loose::Object(A.into())),
        ),
        (&format!("{A} trailing\n"), Some(Loose::Object(A.into()))),
        (&format!("{A}x\n"), None),
        (
            "ref: refs/heads/main\n",
            Some(Loose::Symbolic("refs/heads/main".into())),
        ),
        (
            "ref:refs/heads/main",
            Some(Loose::Symbolic("refs/heads/main".into())),
        ),
        ("ref: \n", None),
        ("0455dfb\n", None),
        ("", None),
    ];
    for (text, want) in cases {
        assert_eq!(&parse_loose(text), want, "{text:?}");
    }
}

#[test]
fn packed_refs_honour_peeled_lines_and_the_header_traits() {
    // refs/packed-backend.c: a `^` line peels the ref before it whatever
    // the header says; `peeled` promises one for every annotated tag under
    // refs/tags/, `fully-peeled` for every ref.
    let text = format!(
        "# pack-refs with: peeled sorted \n{C} refs/remotes/origin/main\n{A} refs/tags/a\n^{C}\n{B} refs/tags/b\n"
    );
    let refs = parse_packed_refs(&text).unwrap();
    assert_eq!(refs["refs/tags/a"].peeled, Peeled::To(C.into()));
    assert_eq!(refs["refs/tags/b"].peeled, Peeled::No);
    assert_eq!(refs["refs/remotes/origin/main"].peeled, Peeled::Unknown);
    let full = parse_packed_refs(&format!(
        "# pack-refs with: peeled fully-peeled sorted \n{C} refs/heads/main\n"
    ))
    .unwrap();
    assert_eq!(full["refs/heads/main"].peeled, Peeled::No);
    let none = parse_packed_refs(&format!("{A} refs/tags/a\n^{C}\n{B} refs/tags/b\n")).unwrap();
    assert_eq!(none["refs/tags/a"].peeled, Peeled::To(C.into()));
    assert_eq!(none["refs/tags/b"].peeled, Peeled::Unknown);
    // git dies on anything else ("unexpected line in packed-refs").
    for bad in [
        format!("^{C}\n"),
        format!("{A}\n"),
        format!("{A} refs/tags/a\n^nothex\n"),
        format!("{A}  refs/tags/a b\n"),
        "garbage\n".to_string(),
    ] {
        assert!(parse_packed_refs(&bad).is_err(), "{bad:?}");
    }
    assert!(parse_packed_refs("").unwrap().is_empty());
}

#[test]
fn rendered_packed_refs_read_back_the_same_and_claim_peeling_only_when_known() {
    let mut map = RefMap::new();
    map.insert(
        "refs/tags/a".into(),
        Ref {
            oid: A.into(),
            peeled: Peeled::To(C.into()),
        },
    );
    map.insert(
        "refs/remotes/origin/main".into(),
        Ref {
            oid: C.into(),
            peeled: Peeled::No,
        },
    );
    let text = refs::render_packed_refs(&map);
    assert!(
        text.starts_with("# pack-refs with: peeled fully-peeled sorted \n"),
        "{text}"
    );
    assert_eq!(parse_packed_refs(&text).unwrap(), map);
    map.insert(
        "refs/tags/b".into(),
        Ref {
            oid: B.into(),
            peeled: Peeled::Unknown,
        },
    );
    let text = refs::render_packed_refs(&map);
    assert!(text.starts_with("# pack-refs with: sorted \n"), "{text}");
    // Without the promise, "no tag" is no longer said; the rest is.
    let back = parse_packed_refs(&text).unwrap();
    assert_eq!(
        back.keys().collect::<Vec<_>>(),
        map.keys().collect::<Vec<_>>()
    );
    assert_eq!(back["refs/tags/a"].peeled, Peeled::To(C.into()));
    assert_eq!(back["refs/remotes/origin/main"].peeled, Peeled::Unknown);
    // Sorted bytewise, as the `sorted` trait promises.
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once(' ').map(|x| x.1))
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

#[test]
fn ref_names_follow_check_refname_format() {
    // refs.c, check_refname_format with REFNAME_ALLOW_ONELEVEL.
    for good in [
        "refs/heads/main",
        "refs/tags/1.0.0+1.0",
        "HEAD",
        "refs/heads/a-b_c",
        "refs/pull/1/head",
    ] {
        assert!(check_refname(good), "{good}");
    }
    for bad in [
        "",
        "@",
        "refs/heads/.hidden",
        "refs/heads/a..b",
        "refs/heads/a.lock",
        "refs/heads/a.",
        "refs/heads/a//b",
        "refs/heads/",
        "refs/heads/a b",
        "refs/heads/a~1",
        "refs/heads/a^",
        "refs/heads/a:b",
        "refs/heads/a?",
        "refs/heads/a*",
        "refs/heads/a[",
        "refs/heads/a\\b",
        "refs/heads/a@{1}",
        "refs/heads/\u{7f}",
    ] {
        assert!(!check_refname(bad), "{bad:?}");
    }
}

#[test]
fn config_is_read_by_gits_syntax() {
    // config.c: sections and keys case-insensitive, subsections not;
    // quoting, escapes, comments, continuation lines.
    let c = parse_config(
        "[core]\n\trepositoryformatversion = 0\n\tbare\n[Remote \"origin\"]\n\tURL = \"/srv/a b\" # comment\n\turl = /second\n",
    )
    .unwrap();
    assert_eq!(c.format_version.as_deref(), Some("0"));
    assert_eq!(c.origin_url.as_deref(), Some("/srv/a b"));
    assert!(c.plain() && !c.indirect && !c.extensions);
    let cases: &[(&str, &str)] = &[
        ("url = /a/b", "/a/b"),
        ("url=/a/b   ", "/a/b"),
        ("url = /a\\\n/b", "/a/b"),
        ("url = /a;b", "/a"),
        ("url = \"/a;b\"", "/a;b"),
        ("url = /a  b", "/a  b"),
        ("url = \"/a\\\"b\\\\c\"", "/a\"b\\c"),
        ("url = /a\\tb", "/a\tb"),
    ];
    for (line, want) in cases {
        let c = parse_config(&format!("[remote \"origin\"]\n{line}\n")).unwrap();
        assert_eq!(c.origin_url.as_deref(), Some(*want), "{line:?}");
    }
    // A subsection is case-sensitive: "Origin" is another remote.
    let c = parse_config("[remote \"Origin\"]\nurl = /x\n").unwrap();
    assert_eq!(c.origin_url, None);
    // The old `[remote.origin]` spelling.
    let c = parse_config("[remote.origin]\nurl = /x\n").unwrap();
    assert_eq!(c.origin_url.as_deref(), Some("/x"));
    // What git refuses, this reader refuses.
    for bad in [
        "[core\n",
        "[remote \"o]\n",
        "x = 1\n",
        "[core]\n=1\n",
        "[core]\nk = \"open\n",
        "[core]\nk = a\\qb\n",
    ] {
        assert!(parse_config(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn formats_extensions_includes_and_hidden_refs_are_noticed() {
    let v1 =
        parse_config("[core]\nrepositoryformatversion = 1\n[extensions]\nrefStorage = reftable\n")
            .unwrap();
    assert!(v1.extensions && !v1.plain());
    assert!(!parse_config("[core]\nrepositoryformatversion = 1\n")
        .unwrap()
        .plain());
    assert!(
        parse_config("[extensions]\nobjectformat = sha256\n")
            .unwrap()
            .extensions
    );
    assert!(parse_config("[include]\npath = other\n").unwrap().indirect);
    assert!(
        parse_config("[includeIf \"gitdir:/x/\"]\npath = other\n")
            .unwrap()
            .indirect
    );
    assert!(
        parse_config("[url \"https://x/\"]\ninsteadOf = /srv/\n")
            .unwrap()
            .indirect
    );
    assert!(parse_config("[remote \"origin\"]\nurl\n").unwrap().indirect);
    assert!(
        parse_config("[uploadpack]\nhideRefs = refs/pull\n")
            .unwrap()
            .hides_refs
    );
    assert!(
        parse_config("[transfer]\nhiderefs = refs/pull\n")
            .unwrap()
            .hides_refs
    );
}

#[test]
fn config_values_are_quoted_as_git_config_writes_them() {
    // config.c, write_pair.
    assert_eq!(refs::quote_value("/srv/recipes/a"), "/srv/recipes/a");
    assert_eq!(refs::quote_value("/srv/a#b"), "\"/srv/a#b\"");
    assert_eq!(refs::quote_value(" x"), "\" x\"");
    assert_eq!(refs::quote_value("a\"b\\c"), "a\\\"b\\\\c");
    // And read back as written.
    for v in ["/a#b", " lead", "a\"b\\c", "t\tab"] {
        let c = parse_config(&format!(
            "[remote \"origin\"]\nurl = {}\n",
            refs::quote_value(v)
        ))
        .unwrap();
        assert_eq!(c.origin_url.as_deref(), Some(v));
    }
    let cfg = refs::clone_config("/srv/x", "main");
    let c = parse_config(&cfg).unwrap();
    assert_eq!(c.origin_url.as_deref(), Some("/srv/x"));
    assert!(c.plain());
}

fn tree() -> (RefMap, BTreeMap<String, String>) {
    let r = |oid: &str| Ref {
        oid: oid.into(),
        peeled: Peeled::Unknown,
    };
    let mut map = RefMap::new();
    map.insert("refs/heads/main".into(), r(C));
    map.insert("refs/remotes/origin/main".into(), r(C));
    map.insert("refs/remotes/upstream/main".into(), r(A));
    map.insert("refs/tags/v1".into(), r(B));
    map.insert("refs/tags/main".into(), r(B));
    map.insert("refs/ccci/pr".into(), r(A));
    let mut sym = BTreeMap::new();
    sym.insert("HEAD".into(), "refs/heads/main".into());
    sym.insert(
        "refs/remotes/origin/HEAD".into(),
        "refs/remotes/origin/main".into(),
    );
    (map, sym)
}

#[test]
fn names_are_looked_up_in_rev_parse_order() {
    // object-name.c get_oid_basic and refs.c ref_rev_parse_rules: a full
    // hex name is an object name; else %s, refs/%s, refs/tags/%s,
    // refs/heads/%s, refs/remotes/%s, refs/remotes/%s/HEAD, first wins.
    let (map, sym) = tree();
    let cases: &[(&str, Lookup)] = &[
        ("refs/remotes/upstream/main", Lookup::Found(A.into())),
        ("refs/ccci/pr", Lookup::Found(A.into())),
        ("main", Lookup::Found(B.into())), // refs/tags/main before refs/heads/main
        ("v1", Lookup::Found(B.into())),
        ("HEAD", Lookup::Found(C.into())),
        ("origin", Lookup::Found(C.into())), // refs/remotes/origin/HEAD
        ("upstream/main", Lookup::Found(A.into())),
        (C, Lookup::Found(C.into())),
        ("refs/remotes/upstream/nope", Lookup::Missing),
        ("nope", Lookup::Missing),
        ("FETCH_HEAD", Lookup::AskGit),
        ("fa7f6ef", Lookup::AskGit),
        ("v1-3-gfa7f6ef", Lookup::AskGit),
    ];
    for (name, want) in cases {
        assert_eq!(&lookup(&map, &sym, name), want, "{name}");
    }
}

#[test]
fn only_absolute_local_paths_are_local() {
    // connect.c url_is_local_not_ssh, and absolute (a relative path is
    // read from the directory git runs in).
    assert_eq!(
        local_path("/srv/git/recipe.git"),
        Some("/srv/git/recipe.git")
    );
    assert_eq!(local_path("/srv/a:b"), Some("/srv/a:b"));
    for remote in [
        "https://git.coopcloud.tech/coop-cloud/x.git",
        "file:///srv/x",
        "git@host:x.git",
        "host:/srv/x",
        "relative/x",
        "ext::ssh x",
    ] {
        assert_eq!(local_path(remote), None, "{remote}");
    }
}
