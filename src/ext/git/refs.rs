//! Git's own files, read and written by git's rules, as pure functions
//! (text in, values out): refs (loose ref files, `packed-refs` with its
//! `^` peeled lines), a repository's `config`, ref names, and the lookup
//! `git rev-parse` does for a name. The run tree (`super::tree`) is built
//! from these without starting git; whatever a function here does not
//! understand is `Err`/[`Lookup::AskGit`], and the caller then asks git.
//!
//! The rules cited are git's (`refs.c`, `refs/files-backend.c`,
//! `refs/packed-backend.c`, `config.c`, `object-name.c`), as of git 2.47.

use std::collections::BTreeMap;

/// What a ref holds: an object name (40 lowercase hex digits) and, when
/// known, what an annotated tag peels to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ref {
    pub oid: String,
    pub peeled: Peeled,
}

/// Whether the object a ref names is known to be an annotated tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peeled {
    /// Not known (a loose ref, or a `packed-refs` without the trait that
    /// promises `^` lines): git reads the object when it needs to know.
    Unknown,
    /// Known not to be a tag object.
    No,
    /// An annotated tag, fully peeled to this object.
    To(String),
}

/// Refs by full name (`refs/...`), in git's order (bytewise).
pub type RefMap = BTreeMap<String, Ref>;

/// A loose ref file's content (`parse_loose_ref_contents`): `ref: TARGET`
/// (a symbolic ref; whitespace after the colon skipped, trailing whitespace
/// dropped) or an object name followed by nothing or whitespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loose {
    Object(String),
    Symbolic(String),
}

pub fn parse_loose(content: &str) -> Option<Loose> {
    if let Some(rest) = content.strip_prefix("ref:") {
        let target = rest.trim_start().trim_end();
        return (!target.is_empty()).then(|| Loose::Symbolic(target.to_string()));
    }
    let (hex, after) = content.split_at_checked(40)?;
    if !is_oid(hex) || !(after.is_empty() || after.starts_with(|c: char| c.is_ascii_whitespace())) {
        return None;
    }
    Some(Loose::Object(hex.to_ascii_lowercase()))
}

/// A full SHA-1 object name in hex (git accepts either case).
pub fn is_oid(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The refs of a `packed-refs` file (`refs/packed-backend.c`): an optional
/// `# pack-refs with: TRAITS` header, then `OID SP REFNAME` lines, each
/// optionally followed by a `^OID` line (what that ref peels to, honoured
/// whatever the header says). The `peeled` trait promises a `^` line for
/// every annotated tag under `refs/tags/`, `fully-peeled` for every ref;
/// so a ref the promise covers without a `^` line is known to be no tag.
/// Any other line is an error, as git dies on it.
pub fn parse_packed_refs(text: &str) -> Result<RefMap, String> {
    let mut refs = RefMap::new();
    let mut lines = text.split_terminator('\n').peekable();
    let (mut tags_peeled, mut fully_peeled) = (false, false);
    if let Some(header) = lines
        .peek()
        .and_then(|l| l.strip_prefix("# pack-refs with:"))
    {
        for t in header.split_ascii_whitespace() {
            tags_peeled |= t == "peeled";
            fully_peeled |= t == "fully-peeled";
        }
        lines.next();
    }
    let mut last: Option<String> = None;
    for line in lines {
        if let Some(peel) = line.strip_prefix('^') {
            let name = last
                .take()
                .ok_or_else(|| format!("a peeled line without a ref: {line:?}"))?;
            if !is_oid(peel) {
                return Err(format!("unexpected line in packed-refs: {line:?}"));
            }
            if let Some(r) = refs.get_mut(&name) {
                r.peeled = Peeled::To(peel.to_ascii_lowercase());
            }
            continue;
        }
        let (oid, name) = line
            .split_once(' ')
            .filter(|(o, n)| is_oid(o) && !n.is_empty())
            .ok_or_else(|| format!("unexpected line in packed-refs: {line:?}"))?;
        if !check_refname(name) {
            return Err(format!("a ref with a bad name in packed-refs: {name:?}"));
        }
        let promised = fully_peeled || (tags_peeled && name.starts_with("refs/tags/"));
        refs.insert(
            name.to_string(),
            Ref {
                oid: oid.to_ascii_lowercase(),
                peeled: if promised {
                    Peeled::No
                } else {
                    Peeled::Unknown
                },
            },
        );
        last = Some(name.to_string());
    }
    Ok(refs)
}

/// `packed-refs` text for `refs` (sorted, as the map is). The header
/// claims `peeled fully-peeled` only when every ref's peeled value is
/// known; otherwise git reads an object when it needs to peel it.
pub fn render_packed_refs(refs: &RefMap) -> String {
    let all_known = refs.values().all(|r| r.peeled != Peeled::Unknown);
    let mut out = String::from(if all_known {
        "# pack-refs with: peeled fully-peeled sorted \n"
    } else {
        "# pack-refs with: sorted \n"
    });
    for (name, r) in refs {
        out.push_str(&r.oid);
        out.push(' ');
        out.push_str(name);
        out.push('\n');
        if let Peeled::To(p) = &r.peeled {
            out.push('^');
            out.push_str(p);
            out.push('\n');
        }
    }
    out
}

/// git's `check_refname_format` (with `REFNAME_ALLOW_ONELEVEL`): no
/// component empty, starting with `.` or ending with `.lock`; no `..`,
/// `@{`, control character, space or any of `~^:?*[\`; not ending with
/// `/` or `.`; not `@` alone.
pub fn check_refname(name: &str) -> bool {
    if name.is_empty() || name == "@" || name.ends_with('.') || name.contains("@{") {
        return false;
    }
    if name.contains("..") {
        return false;
    }
    if name
        .bytes()
        .any(|b| b < 0x20 || b == 0x7f || b" ~^:?*[\\".contains(&b))
    {
        return false;
    }
    name.split('/')
        .all(|c| !c.is_empty() && !c.starts_with('.') && !c.ends_with(".lock"))
}

/// What the run tree needs of a repository's `config`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RepoConfig {
    /// `core.repositoryformatversion` as written (absent: 0).
    pub format_version: Option<String>,
    /// Some `extensions.*` key (reftable, sha256, a partial clone, ...).
    pub extensions: bool,
    /// An `include.*`/`includeIf.*` section or a `url.*` rewrite: values
    /// this reader would have to chase or rewrite.
    pub indirect: bool,
    /// The first `remote.origin.url` (what `git remote get-url origin`
    /// prints when nothing rewrites it).
    pub origin_url: Option<String>,
    /// `uploadpack.hideRefs` or `transfer.hideRefs`: refs a fetch from
    /// this repository would not see.
    pub hides_refs: bool,
}

impl RepoConfig {
    /// Whether git reads this repository as this reader does: format 0
    /// and no extension (`setup.c`, `check_repository_format_gently`).
    pub fn plain(&self) -> bool {
        !self.extensions
            && self
                .format_version
                .as_deref()
                .is_none_or(|v| v.trim() == "0")
    }
}

/// Parses a git config file (`config.c`, `git_parse_source`): `[section]`,
/// `[section "subsection"]` (backslash escapes) and the old
/// `[section.subsection]`; `key = value` or a bare `key` (true); values
/// with `"` quoting, `\n` `\t` `\b` `\"` `\\` escapes, a trailing `\`
/// continuing the line, `#`/`;` comments outside quotes, and whitespace
/// outside quotes trimmed at both ends. Section and key names are
/// case-insensitive. Anything else is an error, as for git.
pub fn parse_config(text: &str) -> Result<RepoConfig, String> {
    let mut cfg = RepoConfig::default();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let (mut section, mut sub): (String, Option<String>) = (String::new(), None);
    let err = |what: &str, at: usize| {
        let line = chars[..at.min(chars.len())]
            .iter()
            .filter(|&&c| c == '\n')
            .count()
            + 1;
        format!("{what} on line {line}")
    };
    // A UTF-8 byte-order mark is skipped, as git does.
    if chars.first() == Some(&'\u{feff}') {
        i = 1;
    }
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' || c.is_whitespace() {
            i += 1;
        } else if c == '#' || c == ';' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '[' {
            i += 1;
            let mut name = String::new();
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "-.".contains(chars[i])) {
                name.push(chars[i].to_ascii_lowercase());
                i += 1;
            }
            sub = None;
            if i < chars.len() && chars[i].is_whitespace() && chars[i] != '\n' {
                while i < chars.len() && chars[i].is_whitespace() && chars[i] != '\n' {
                    i += 1;
                }
                if chars.get(i) != Some(&'"') {
                    return Err(err("a bad section header", i));
                }
                i += 1;
                let mut s = String::new();
                loop {
                    match chars.get(i) {
                        None | Some('\n') => return Err(err("an unterminated subsection", i)),
                        Some('"') => break,
                        Some('\\') => {
                            i += 1;
                            match chars.get(i) {
                                None | Some('\n') => {
                                    return Err(err("an unterminated subsection", i))
                                }
                                Some(&e) => s.push(e),
                            }
                        }
                        Some(&o) => s.push(o),
                    }
                    i += 1;
                }
                i += 1;
                sub = Some(s);
            } else if let Some((s, rest)) = name.split_once('.') {
                // `[section.subsection]`: the old spelling, lowercased.
                sub = Some(rest.to_string());
                name = s.to_string();
            }
            if chars.get(i) != Some(&']') || name.is_empty() {
                return Err(err("a bad section header", i));
            }
            i += 1;
            section = name;
        } else if c.is_ascii_alphabetic() {
            if section.is_empty() {
                return Err(err("a key outside any section", i));
            }
            let mut key = String::new();
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '-') {
                key.push(chars[i].to_ascii_lowercase());
                i += 1;
            }
            while i < chars.len() && chars[i].is_whitespace() && chars[i] != '\n' {
                i += 1;
            }
            let value = match chars.get(i) {
                None | Some('\n') => None,
                Some('=') => {
                    i += 1;
                    let (v, next) = parse_value(&chars, i).map_err(|w| err(w, i))?;
                    i = next;
                    Some(v)
                }
                Some(_) => return Err(err("a bad config line", i)),
            };
            cfg.take(&section, sub.as_deref(), &key, value);
        } else {
            return Err(err("a bad config line", i));
        }
    }
    Ok(cfg)
}

impl RepoConfig {
    fn take(&mut self, section: &str, sub: Option<&str>, key: &str, value: Option<String>) {
        match (section, sub, key) {
            ("core", None, "repositoryformatversion") => {
                self.format_version = Some(value.unwrap_or_default());
            }
            ("extensions", _, _) => self.extensions = true,
            ("include" | "includeif", _, _) => self.indirect = true,
            ("url", Some(_), "insteadof" | "pushinsteadof") => self.indirect = true,
            ("uploadpack" | "transfer", None, "hiderefs") => self.hides_refs = true,
            ("remote", Some("origin"), "url") if self.origin_url.is_none() => match value {
                Some(v) => self.origin_url = Some(v),
                // git refuses a url without a value ("missing value").
                None => self.indirect = true,
            },
            _ => {}
        }
    }
}

/// A value after `=` up to the end of its line, as git's `parse_value`
/// reads it (whitespace outside quotes counts only between other
/// characters; a comment ends the value; the end of the file ends a line);
/// returns it and the index after it.
fn parse_value(chars: &[char], mut i: usize) -> Result<(String, usize), &'static str> {
    let mut out = String::new();
    let (mut quoted, mut comment, mut spaces) = (false, false, 0usize);
    loop {
        let c = chars.get(i).copied().unwrap_or('\n');
        i += 1;
        if c == '\n' {
            if quoted {
                return Err("an unterminated quote");
            }
            return Ok((out, i));
        }
        if comment {
            continue;
        }
        if c.is_ascii_whitespace() && !quoted {
            if !out.is_empty() {
                spaces += 1;
            }
            continue;
        }
        if !quoted && (c == ';' || c == '#') {
            comment = true;
            continue;
        }
        for _ in 0..spaces {
            out.push(' ');
        }
        spaces = 0;
        match c {
            '\\' => {
                let e = chars.get(i).copied().unwrap_or('\n');
                i += 1;
                match e {
                    '\n' => {}
                    't' => out.push('\t'),
                    'b' => out.push('\u{8}'),
                    'n' => out.push('\n'),
                    '\\' | '"' => out.push(e),
                    _ => return Err("a bad escape in a value"),
                }
            }
            '"' => quoted = !quoted,
            _ => out.push(c),
        }
    }
}

/// A config value as `git config` writes it (`config.c`, `write_pair`):
/// quoted when it starts or ends with a space or holds `#` or `;`; `"`,
/// `\`, newline and tab escaped.
pub fn quote_value(v: &str) -> String {
    let quote = v.starts_with(' ') || v.ends_with(' ') || v.contains(['#', ';']);
    let mut out = String::with_capacity(v.len() + 2);
    if quote {
        out.push('"');
    }
    for c in v.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            _ => out.push(c),
        }
    }
    if quote {
        out.push('"');
    }
    out
}

/// A subsection name as git writes it in `[section "NAME"]`: `"` and `\`
/// escaped.
fn quote_subsection(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The config `git clone --no-checkout ORIGIN` writes (git 2.47, on a
/// filesystem with an executable bit and case-sensitive names; `init`
/// probes both and the caller checks the same): the core settings of a
/// non-bare repository, the remote `origin` and its default branch.
pub fn clone_config(origin_url: &str, branch: &str) -> String {
    format!(
        "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n\
         [remote \"origin\"]\n\turl = {}\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n\
         [branch \"{}\"]\n\tremote = origin\n\tmerge = refs/heads/{branch}\n",
        quote_value(origin_url),
        quote_subsection(branch),
    )
}

/// What `git rev-parse --verify NAME^{commit}` would find for a name,
/// as far as refs alone can say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A ref (or a full object name) names this object; that it is a
    /// commit (or peels to one) is for git to confirm.
    Found(String),
    /// No ref by that name, and the name cannot be an object name.
    Missing,
    /// Only the object database can tell (an abbreviated object name,
    /// `git describe` output, a pseudo-ref such as FETCH_HEAD).
    AskGit,
}

/// The order `rev-parse` tries a name in (`ref_rev_parse_rules`).
const REV_PARSE_RULES: [(&str, &str); 6] = [
    ("", ""),
    ("refs/", ""),
    ("refs/tags/", ""),
    ("refs/heads/", ""),
    ("refs/remotes/", ""),
    ("refs/remotes/", "/HEAD"),
];

/// `name` looked up as `get_oid_basic` does: a full hex object name is
/// taken as it is; else the first rule of [`REV_PARSE_RULES`] naming an
/// existing ref wins (`repo_dwim_ref`; HEAD and `symrefs` followed); else
/// only an abbreviated object name or describe output is left, which needs
/// the objects. `symrefs` holds the symbolic refs (HEAD among them).
pub fn lookup(refs: &RefMap, symrefs: &BTreeMap<String, String>, name: &str) -> Lookup {
    if is_oid(name) {
        return Lookup::Found(name.to_ascii_lowercase());
    }
    for (prefix, suffix) in REV_PARSE_RULES {
        let full = format!("{prefix}{name}{suffix}");
        if !full.starts_with("refs/") && full != "HEAD" {
            // A name at the top of the git directory: only HEAD is one
            // the run tree has; git reads others (FETCH_HEAD, ORIG_HEAD)
            // from files this tree does not write.
            if full.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
                return Lookup::AskGit;
            }
            continue;
        }
        if let Some(oid) = resolve(refs, symrefs, &full) {
            return Lookup::Found(oid);
        }
    }
    // `get_describe_name` (`...-gHEX`) and `get_short_oid` (4 or more hex
    // digits) read objects.
    let describe = name
        .rsplit_once("-g")
        .is_some_and(|(_, h)| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()));
    let short = name.len() >= 4 && name.bytes().all(|b| b.is_ascii_hexdigit());
    if describe || short {
        Lookup::AskGit
    } else {
        Lookup::Missing
    }
}

/// A ref's object, following symbolic refs up to git's depth of 5
/// (`SYMREF_MAXDEPTH`).
pub fn resolve(refs: &RefMap, symrefs: &BTreeMap<String, String>, name: &str) -> Option<String> {
    let mut name = name;
    for _ in 0..=5 {
        if let Some(r) = refs.get(name) {
            return Some(r.oid.clone());
        }
        name = symrefs.get(name)?;
    }
    None
}

/// Whether `url` is a local path by git's rule (`url_is_local_not_ssh`:
/// no `://`, and no `:` before the first `/`), and absolute: a relative
/// one would be read from the directory git runs in.
pub fn local_path(url: &str) -> Option<&str> {
    if url.contains("://") || !url.starts_with('/') {
        return None;
    }
    let colon = url.find(':');
    let slash = url.find('/');
    match (colon, slash) {
        (Some(c), Some(s)) if c < s => None,
        _ => Some(url),
    }
}
