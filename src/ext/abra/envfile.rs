//! Env files (`.env.sample`, an app's env file) read as abra reads them
//! (pure; SPEC section 3a). abra reads them with a godotenv parser
//! (github.com/joho/godotenv, `parser.go`, v1.5), and so does this, rule
//! for rule; the table `tests/data/envfile_cases.json` cites the rule each case
//! follows and runs against this reader and the stand-in abra's.
//!
//! The rules (godotenv `parser.go`):
//! - `---\n` lines are dropped and `\r\n` is `\n` (`parseBytes`).
//! - Blank space and lines whose first non-blank character is `#` are
//!   skipped (`getStatementStart`).
//! - A key may follow `export ` and ends at `=` or `:` (the YAML form
//!   `KEY: value`); it holds letters, digits, `_` and `.` (blanks inside
//!   are skipped, then trailing ones trimmed); anything else is an error
//!   (`locateKeyName`).
//! - Blanks after the `=` are skipped. An unquoted value runs to the end
//!   of the line; the *last* `#` that follows a blank starts a comment;
//!   the rest is trimmed of blanks (`extractVarValue`).
//! - A quoted value runs to the first matching quote not preceded by a
//!   backslash, across lines; quote characters at both ends are trimmed.
//!   What follows the closing quote on its line is skipped when it is a
//!   comment. A quote that never closes is an error.
//! - Double-quoted values: `\n` and `\r` are a newline and a carriage
//!   return, any other backslash before a character other than `$` is
//!   dropped (`expandEscapes`); then variables expand.
//! - Unquoted and double-quoted values expand `$NAME` and `${NAME}` (NAME
//!   is `[A-Z0-9_]+`: upper case only) from the keys defined earlier in
//!   the file; `\$` is a literal `$` (`expandVariables`). Anything after
//!   the name up to a `}` is kept: `${A:-x}` is A's value then `:-x}`.
//!   godotenv would then try the process environment; abra's process
//!   environment is not the recipe's, so an unknown name is empty here
//!   (SPEC section 3a).
//! - Single-quoted values are literal.
//! - The last definition of a key wins.
//!
//! abra also reads modifiers from the comment after a value: the words
//! `name=value` there (`SECRET_DB_PASSWORD_VERSION=v1 # length=32`,
//! `# generate=false`). They are kept per key.

use std::collections::BTreeMap;
use std::fmt;

/// An env file's values and the modifiers of its lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvFile {
    pub vars: BTreeMap<String, String>,
    /// Per key, the `name=value` words of the comment after its value.
    pub modifiers: BTreeMap<String, BTreeMap<String, String>>,
}

impl EnvFile {
    /// A modifier of `key` (`length`, `generate`).
    pub fn modifier(&self, key: &str, name: &str) -> Option<&str> {
        self.modifiers.get(key)?.get(name).map(String::as_str)
    }
}

/// Why an env file cannot be read (as godotenv refuses it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// 1-based line of the statement.
    pub line: usize,
    pub what: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

impl std::error::Error for Error {}

/// godotenv's `isSpace`: blanks that are not line breaks.
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    )
}

/// Parses env-file text (pure).
pub fn parse(text: &str) -> Result<EnvFile, Error> {
    let src = text.replace("---\n", "\n").replace("\r\n", "\n");
    let chars: Vec<char> = src.chars().collect();
    let mut out = EnvFile::default();
    let mut pos = 0;
    let line_of = |p: usize| {
        chars[..p.min(chars.len())]
            .iter()
            .filter(|c| **c == '\n')
            .count()
            + 1
    };
    loop {
        // getStatementStart: skip blanks (line breaks too) and comment lines.
        while pos < chars.len() && chars[pos].is_whitespace() {
            pos += 1;
        }
        if pos >= chars.len() {
            break;
        }
        if chars[pos] == '#' {
            match chars[pos..].iter().position(|c| *c == '\n') {
                Some(n) => {
                    pos += n;
                    continue;
                }
                None => break,
            }
        }
        let line = line_of(pos);
        let (key, after) = key_name(&chars, pos).map_err(|what| Error { line, what })?;
        let (value, rest, comment) =
            value(&chars, after, &out.vars).map_err(|what| Error { line, what })?;
        let mods = modifiers(&comment);
        if mods.is_empty() {
            out.modifiers.remove(&key);
        } else {
            out.modifiers.insert(key.clone(), mods);
        }
        out.vars.insert(key, value);
        pos = rest;
    }
    Ok(out)
}

/// `locateKeyName`: the key at `pos` and where its value starts.
fn key_name(chars: &[char], mut pos: usize) -> Result<(String, usize), String> {
    let export: Vec<char> = "export".chars().collect();
    if chars[pos..].starts_with(&export) && chars.get(pos + 6).copied().is_some_and(is_space) {
        pos += 6;
        while pos < chars.len() && is_space(chars[pos]) {
            pos += 1;
        }
    }
    let start = pos;
    let mut i = pos;
    loop {
        let Some(&c) = chars.get(i) else {
            let near: String = chars[start..].iter().collect();
            return Err(format!("no `=` after the variable name near {near:?}"));
        };
        if is_space(c) || c == '_' || c == '.' || c.is_alphanumeric() {
            i += 1;
            continue;
        }
        if c == '=' || c == ':' {
            break;
        }
        let near: String = chars[start..].iter().take_while(|c| **c != '\n').collect();
        return Err(format!(
            "unexpected character {c:?} in variable name near {near:?}"
        ));
    }
    let key: String = chars[start..i].iter().collect();
    let key = key.trim_end_matches(is_space).to_string();
    let mut v = i + 1;
    while v < chars.len() && is_space(chars[v]) {
        v += 1;
    }
    Ok((key, v))
}

/// `extractVarValue`: the value at `pos`, where the next statement may
/// start, and the comment that followed the value on its line.
fn value(
    chars: &[char],
    pos: usize,
    vars: &BTreeMap<String, String>,
) -> Result<(String, usize, String), String> {
    let quote = chars.get(pos).copied().filter(|c| *c == '"' || *c == '\'');
    let Some(q) = quote else {
        let end = chars[pos..]
            .iter()
            .position(|c| *c == '\n' || *c == '\r')
            .map_or(chars.len(), |n| pos + n);
        let line = &chars[pos..end];
        // The last `#` preceded by a blank starts the comment.
        let cut = (1..line.len())
            .rev()
            .find(|&i| line[i] == '#' && is_space(line[i - 1]));
        let (val, comment) = match cut {
            Some(i) => (&line[..i], line[i + 1..].iter().collect::<String>()),
            None => (line, String::new()),
        };
        let val: String = val.iter().collect();
        let val = val.trim_matches(is_space);
        return Ok((expand(val, vars), end, comment));
    };
    let mut i = pos + 1;
    while i < chars.len() {
        if chars[i] == q && chars[i - 1] != '\\' {
            let raw: String = chars[pos..i].iter().collect();
            let raw = raw.trim_matches(q);
            let v = if q == '"' {
                expand(&unescape(raw), vars)
            } else {
                raw.to_string()
            };
            // The rest of the closing quote's line: a comment there is skipped
            // by the next statement's start; its words are the modifiers.
            let end = chars[i + 1..]
                .iter()
                .position(|c| *c == '\n')
                .map_or(chars.len(), |n| i + 1 + n);
            let tail: String = chars[i + 1..end].iter().collect();
            let comment = tail
                .trim_start_matches(is_space)
                .strip_prefix('#')
                .unwrap_or_default()
                .to_string();
            return Ok((v, i + 1, comment));
        }
        i += 1;
    }
    let shown: String = chars[pos..].iter().take_while(|c| **c != '\n').collect();
    Err(format!("unterminated quoted value {shown}"))
}

/// `expandEscapes`: `\n`, `\r`; a backslash before any other character
/// but `$` is dropped.
fn unescape(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut pass1 = String::new();
    let mut i = 0;
    while i < chars.len() {
        // Go's `.` does not match a newline.
        if chars[i] == '\\' && i + 1 < chars.len() && chars[i + 1] != '\n' {
            match chars[i + 1] {
                'n' => pass1.push('\n'),
                'r' => pass1.push('\r'),
                c => {
                    pass1.push('\\');
                    pass1.push(c);
                }
            }
            i += 2;
        } else {
            pass1.push(chars[i]);
            i += 1;
        }
    }
    // unescapeCharsRegex `\\([^$])` -> `$1`, left to right, not overlapping.
    let chars: Vec<char> = pass1.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() && chars[i + 1] != '$' {
            out.push(chars[i + 1]);
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

fn var_char(c: char) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'
}

/// `expandVariables`: godotenv's regex `(\\)?(\$)(\()?\{?([A-Z0-9_]+)?\}?`
/// applied left to right.
fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let escaped = chars[i] == '\\' && chars.get(i + 1) == Some(&'$');
        let dollar = if escaped { i + 1 } else { i };
        if chars[dollar] != '$' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        // The whole match: optional `(`, optional `{`, a name, optional `}`.
        let mut j = dollar + 1;
        if chars.get(j) == Some(&'(') {
            j += 1;
        }
        if chars.get(j) == Some(&'{') {
            j += 1;
        }
        let name_start = j;
        while chars.get(j).copied().is_some_and(var_char) {
            j += 1;
        }
        let name: String = chars[name_start..j].iter().collect();
        if chars.get(j) == Some(&'}') {
            j += 1;
        }
        let matched: String = chars[i..j].iter().collect();
        if escaped {
            // `\$...` is the match without its backslash.
            out.push_str(&matched[1..]);
        } else if !name.is_empty() {
            out.push_str(vars.get(&name).map(String::as_str).unwrap_or_default());
        } else {
            out.push_str(&matched);
        }
        i = j;
    }
    out
}

/// The `name=value` words of a comment.
fn modifiers(comment: &str) -> BTreeMap<String, String> {
    comment
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
