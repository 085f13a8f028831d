//! Every name rule once: run ids, app domains, DNS labels. A name is
//! checked before it becomes a path, a lock, a docker object or an abra
//! argument, and the error (exit 2) names the field and the rule.
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

fn bad(field: &str, value: &str, rule: &str) -> anyhow::Error {
    Failure::usage(format!("invalid {field} {value:?}: {rule}"))
}
