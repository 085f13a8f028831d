//! Every name rule once: run ids, app domains, DNS labels, servers, git
//! refs, pull request and build numbers, Drone repositories, host ids and
//! test tags. A name is checked before it becomes a path, a lock, a docker
//! object, an abra or git argument, and the error (exit 2) names the field
//! and the rule ([`bad`], the one form every rule of `config` reports in).
//!
//! Two domain rules on purpose: a domain a run deploys to ([`check_domain`])
//! has at least two labels, because abra serves an app under a server's
//! domain; a lock name ([`Name::AppDomain`]) is any DNS name, one label
//! included, because an operator may lock a name by hand (`cc-ci-run lock
//! app NAME`) and the janitor must be able to name whatever it finds. A run
//! id is at most 63 characters, the length of a DNS label, wherever it is
//! read: the id a Drone build gets is cut to that (`config::drone_run_id`),
//! and lock files, run records and markers use the same [`check_run_id`].

use anyhow::Result;

use crate::exit::Failure;

/// The kinds of name the lock commands take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name {
    /// A lock's app domain: a lowercase DNS name of one or more labels.
    AppDomain,
    /// A run id: `[a-z0-9][a-z0-9-]*`.
    RunId,
}

impl Name {
    /// How a message names the field.
    pub(crate) fn field(self) -> &'static str {
        match self {
            Name::AppDomain => "app domain",
            Name::RunId => "run id",
        }
    }
}

/// The longest run id (a DNS label's length).
pub const RUN_ID_MAX: usize = 63;

/// The longest app domain (a DNS name).
pub const DOMAIN_MAX: usize = 253;

/// The longest label of an app domain (a DNS label).
pub(crate) const LABEL_MAX: usize = 63;

/// Checks a lock name before anything is touched: an app domain is a
/// lowercase DNS name, a run id matches `[a-z0-9][a-z0-9-]*`. The error
/// (exit 2) names the field and the rule.
pub fn validate_name(kind: impl Into<Name>, name: &str) -> Result<()> {
    let kind = kind.into();
    match name_problem(kind, name) {
        None => Ok(()),
        Some(problem) => Err(Failure::usage(format!(
            "{} {} {problem}: {}",
            kind.field(),
            shown(name),
            rule(kind)
        ))),
    }
}

fn rule(kind: Name) -> &'static str {
    match kind {
        Name::AppDomain => "app domains are lowercase DNS names (labels of a-z, 0-9 and inner `-`, at most 63 characters each, joined by `.`, at most 253 in all)",
        Name::RunId => "run ids match [a-z0-9][a-z0-9-]* (at most 63 characters)",
    }
}

/// The name as a message shows it: quoted, escaped, cut when over-long, so
/// a hostile name cannot write control sequences to a terminal.
fn shown(name: &str) -> String {
    let cut: String = name.chars().take(80).collect();
    if cut.len() < name.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// Characters a shell gives a meaning to (quoting, expansion, globbing,
/// redirection, control); each gets its own message.
const SHELL_META: &str = "|&;()<>*?[]{}$`'\"!#~^=%";

/// What is wrong with a name, most specific first; None when it is valid.
fn name_problem(kind: Name, name: &str) -> Option<String> {
    let max = match kind {
        Name::AppDomain => DOMAIN_MAX,
        Name::RunId => RUN_ID_MAX,
    };
    if name.is_empty() {
        return Some("is empty".into());
    }
    if name.len() > max {
        return Some(format!(
            "is {} bytes long, over the limit of {max}",
            name.len()
        ));
    }
    if name.contains(['/', '\\']) {
        return Some("contains a path separator".into());
    }
    if name.contains("..") || name == "." {
        return Some("is a path traversal (`..` or `.`)".into());
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("contains whitespace or a control character".into());
    }
    if let Some(c) = name.chars().find(|c| SHELL_META.contains(*c)) {
        return Some(format!("contains the shell metacharacter `{c}`"));
    }
    if name.chars().any(|c| c.is_uppercase()) {
        return Some("contains uppercase letters".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-'))
    {
        return Some(format!("contains `{}`", c.escape_default()));
    }
    match kind {
        Name::RunId => {
            if name.contains('.') {
                return Some("contains `.`".into());
            }
            if name.starts_with('-') {
                return Some("starts with `-`".into());
            }
        }
        Name::AppDomain => {
            for label in name.split('.') {
                if label.is_empty() {
                    return Some("has an empty label (a leading, trailing or doubled `.`)".into());
                }
                if label.len() > LABEL_MAX {
                    return Some(format!(
                        "has a label of {} characters, over the limit of {LABEL_MAX}",
                        label.len()
                    ));
                }
                if label.starts_with('-') || label.ends_with('-') {
                    return Some(format!(
                        "has the label `{label}` that starts or ends with `-`"
                    ));
                }
            }
        }
    }
    None
}

/// A lowercase DNS label: `[a-z0-9]`, inner `-`, 1 to 63 characters.
pub(crate) fn check_label(field: &str, value: &str) -> Result<()> {
    const RULE: &str = "must be a lowercase DNS label (a-z, 0-9 and inner '-', 1 to 63 characters)";
    let ok = !value.is_empty()
        && value.len() <= LABEL_MAX
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(bad(field, value, RULE))
    }
}

/// A domain: two or more lowercase DNS labels joined by dots, 253 at most.
pub fn check_domain(field: &str, value: &str) -> Result<()> {
    const RULE: &str = "must be a lowercase domain of two or more DNS labels (a-z, 0-9, inner '-'), 253 characters at most";
    if value.is_empty() || value.len() > 253 || !value.contains('.') {
        return Err(bad(field, value, RULE));
    }
    for label in value.split('.') {
        if check_label(field, label).is_err() {
            return Err(bad(field, value, RULE));
        }
    }
    Ok(())
}

/// A run id: `[a-z0-9][a-z0-9-]*`, [`RUN_ID_MAX`] characters at most.
pub fn check_run_id(value: &str) -> Result<()> {
    validate_name(Name::RunId, value)
}

/// The error of a value that breaks a rule (exit 2): `invalid FIELD
/// "VALUE": RULE`.
pub(crate) fn bad(field: &str, value: &str, rule: &str) -> anyhow::Error {
    Failure::usage(format!("invalid {field} {value:?}: {rule}"))
}

/// abra server names are host names: a DNS label or a domain.
pub(crate) fn check_server(server: &str) -> Result<()> {
    if server.contains('.') {
        check_domain("server", server)
    } else {
        check_label("server", server)
    }
}

/// A git ref name or a hex sha. Stricter than git: only `[A-Za-z0-9._/+-]`,
/// no `..`, no `//`, no leading `-`, `/` or `.`, no trailing `/`, `.` or
/// `.lock`, 200 characters at most; so a ref can never be read as an option
/// or a path outside the repository.
pub fn check_ref(field: &str, value: &str) -> Result<()> {
    const RULE: &str = "must be a git ref (A-Z, a-z, 0-9, '.', '_', '/', '+', '-'; no '..', '//', leading '-', '/' or '.', trailing '/', '.' or '.lock') or a hex sha, 200 characters at most";
    let ok = !value.is_empty()
        && value.len() <= 200
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/+-".contains(&b))
        && !value.contains("..")
        && !value.contains("//")
        && !value.contains("/.")
        && !value.starts_with(['-', '/', '.'])
        && !value.ends_with(['/', '.'])
        && !value.ends_with(".lock");
    if ok {
        Ok(())
    } else {
        Err(bad(field, value, RULE))
    }
}

/// A pull request number: 1 to 999999999, digits only.
pub(crate) fn check_pr(field: &str, value: &str) -> Result<u32> {
    let ok = !value.is_empty()
        && value.len() <= 9
        && value.bytes().all(|b| b.is_ascii_digit())
        && !value.starts_with('0');
    match value.parse::<u32>() {
        Ok(n) if ok => Ok(n),
        _ => Err(bad(
            field,
            value,
            "must be a pull request number (digits, 1 or more, no leading zero)",
        )),
    }
}

/// A build number: digits only.
pub(crate) fn check_build(field: &str, value: &str) -> Result<u64> {
    let ok = !value.is_empty() && value.len() <= 18 && value.bytes().all(|b| b.is_ascii_digit());
    match value.parse::<u64>() {
        Ok(n) if ok => Ok(n),
        _ => Err(bad(field, value, "must be a build number (digits only)")),
    }
}

/// DRONE_REPO as Drone sets it (`owner/name`): printable, no whitespace,
/// 255 characters at most, with at least one letter or digit.
pub(crate) fn check_drone_repo(value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 255
        && value.bytes().all(|b| b.is_ascii_graphic())
        && value.bytes().any(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(bad(
            "DRONE_REPO",
            value,
            "must be the repository as Drone names it (owner/name: printable ASCII, no whitespace, 255 characters at most)",
        ))
    }
}

/// The longest host id: it is a label value, and messages show it.
pub const HOST_ID_MAX: usize = 63;

/// Checks a host id (`CCCI_HOST_ID`): `[A-Za-z0-9][A-Za-z0-9._-]*`, at
/// most 63 characters.
pub fn check_host_id(value: &str) -> Result<()> {
    const RULE: &str = "host ids are 1 to 63 characters of A-Z, a-z, 0-9, `.`, `_` and `-`, starting with a letter or digit";
    let ok = !value.is_empty()
        && value.len() <= HOST_ID_MAX
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(bad("CCCI_HOST_ID", value, RULE))
    }
}

/// What a test tag may hold, as the messages of `--tag` and of a test
/// header's `tags` say it after "a tag" or "tag `NAME`".
pub(crate) const TAG_RULE: &str = "may only hold letters, digits, `-`, `_` and `.`";

/// A test tag (`--tag`, a test header's `tags`): [`TAG_RULE`]. The callers
/// word their own errors, since a header error names the file and line.
pub(crate) fn is_tag(value: &str) -> bool {
    value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}
