//! Secrets out of the output (SPEC section 3 step 9): values that must never
//! be printed are replaced by `***` in every line cc-ci-run writes.
//!
//! One set per process, filled from two sources: the values `CCCI_REDACT`
//! names (variables of cc-ci-run's environment, or files whose content is a
//! secret: read once, when the inputs are checked) and the secrets `abra app
//! new -S` generates and prints (learned from its output before anything of
//! that output can be logged, a failed call's error included). It is applied
//! where output leaves the process, not at each call site: the log writer
//! (stderr and `run.log`, so every line, the summary block among them), the
//! captured output of each test (its files in the reports, and through them
//! the JUnit failure text), and the writer of the reports, the run record,
//! the metrics and the timeline page ([`crate::rundir::write_output`]).
//!
//! A value shorter than [`MIN_LEN`] is not hidden: `***` in place of every
//! `admin` or `1234` would mangle ordinary words and numbers of the output
//! and hide little. Each value is matched as it is and in the forms the
//! writers escape it to (JSON strings, XML text and attributes, Rust's
//! `{:?}`), so a value with a quote or an ampersand is hidden in the record
//! and the JUnit too. A file's content is one value and each of its lines
//! of at least [`MIN_LEN`] characters another, since output is logged line
//! by line and a multi-line secret (a key file) is printed over several.
//!
//! Matching is one Aho-Corasick automaton over the whole set (leftmost
//! longest), rebuilt when the set grows (a handful of times per run).
//! Streamed output (a test's captured file, written as it arrives in chunks
//! of any size) goes through [`Carry`], which holds back the last bytes that
//! could be the start of a value split across two chunks; a test's line
//! too long for one log line is cut into pieces before a value, never
//! through it ([`cut_before`]).

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};
use anyhow::Result;

use crate::exit::Failure;

/// The process environment as `config` reads it (the same type as
/// `config::Env`, named here so that redact, which `ext` uses, does not
/// import `config`, which imports `cli`: a cycle of the module graph).
type Env = std::collections::HashMap<String, String>;

/// What a hidden value is replaced by.
pub const MASK: &str = "***";

/// Values shorter than this (in characters) are not hidden (see the module
/// header).
pub const MIN_LEN: usize = 8;

/// The variable that names the operator's secrets.
pub const VAR: &str = "CCCI_REDACT";

/// A set of values to hide and the automaton that finds them.
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    /// The values as given (each at least [`MIN_LEN`] characters).
    values: Vec<String>,
    /// Every form searched for: the values and their escaped forms.
    patterns: Vec<String>,
    matcher: Option<Arc<AhoCorasick>>,
    /// The longest pattern, in bytes.
    longest: usize,
}

impl Secrets {
    pub const fn new() -> Secrets {
        Secrets {
            values: Vec::new(),
            patterns: Vec::new(),
            matcher: None,
            longest: 0,
        }
    }

    /// Adds values; those shorter than [`MIN_LEN`] and those already known
    /// are passed over. Returns how many were added.
    pub fn add<S: AsRef<str>>(&mut self, values: impl IntoIterator<Item = S>) -> usize {
        let mut added = 0;
        for v in values {
            let v = v.as_ref();
            if !long_enough(v) || self.values.iter().any(|k| k == v) {
                continue;
            }
            self.values.push(v.to_string());
            for form in escaped_forms(v) {
                if !self.patterns.contains(&form) {
                    self.patterns.push(form);
                }
            }
            added += 1;
        }
        if added > 0 {
            self.longest = self.patterns.iter().map(String::len).max().unwrap_or(0);
            // Building fails only past the automaton's size limits, far
            // beyond any set of secrets; then nothing could be hidden, and
            // a run that cannot hide what it was told to must not print it:
            // every line would be shown as the mask alone (see `redact`).
            self.matcher = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&self.patterns)
                .ok()
                .map(Arc::new);
        }
        added
    }

    /// How many values are hidden.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every value replaced by [`MASK`].
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.values.is_empty() {
            return Cow::Borrowed(text);
        }
        match &self.matcher {
            Some(m) if m.is_match(text) => {
                let mut out = String::with_capacity(text.len());
                m.replace_all_with(text, &mut out, |_, _, dst| {
                    dst.push_str(MASK);
                    true
                });
                Cow::Owned(out)
            }
            Some(_) => Cow::Borrowed(text),
            None => Cow::Borrowed(MASK),
        }
    }

    /// Like [`Self::redact`], for bytes that need not be UTF-8.
    pub fn redact_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        if self.values.is_empty() {
            return Cow::Borrowed(bytes);
        }
        match &self.matcher {
            Some(m) if m.is_match(bytes) => {
                let mut out = Vec::with_capacity(bytes.len());
                m.replace_all_with_bytes(bytes, &mut out, |_, _, dst| {
                    dst.extend_from_slice(MASK.as_bytes());
                    true
                });
                Cow::Owned(out)
            }
            Some(_) => Cow::Borrowed(bytes),
            None => Cow::Borrowed(MASK.as_bytes()),
        }
    }
}

/// Whether a value is long enough to be hidden.
pub fn long_enough(value: &str) -> bool {
    value.chars().count() >= MIN_LEN
}

/// The forms a value takes in what cc-ci-run writes: as it is, in a JSON
/// string (the record, report.json), in XML text and attributes (JUnit),
/// and in Rust's `{:?}` (errors quote bad values with it).
fn escaped_forms(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_string()];
    let mut push = |f: String| {
        if !f.is_empty() && !forms.contains(&f) {
            forms.push(f);
        }
    };
    if let Ok(json) = serde_json::to_string(value) {
        push(json[1..json.len() - 1].to_string());
    }
    let debug = format!("{value:?}");
    push(debug[1..debug.len() - 1].to_string());
    let text = value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    push(text.replace('"', "&quot;").replace('\'', "&apos;"));
    push(text);
    forms
}

// ------------------------------------------------------- the process's set --

static SECRETS: RwLock<Secrets> = RwLock::new(Secrets::new());

fn read<R>(f: impl FnOnce(&Secrets) -> R) -> R {
    // A poisoned lock only means a thread panicked while adding; the set
    // it holds is whole (a push never leaves it half done).
    match SECRETS.read() {
        Ok(g) => f(&g),
        Err(p) => f(&p.into_inner()),
    }
}

/// Adds values to the process's set; returns how many were new.
pub fn add<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> usize {
    let mut guard = match SECRETS.write() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    guard.add(values)
}

/// `text` with the process's secrets replaced by [`MASK`].
pub fn text(text: &str) -> Cow<'_, str> {
    read(|s| s.redact(text))
}

/// `bytes` with the process's secrets replaced by [`MASK`].
pub fn bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    read(|s| s.redact_bytes(bytes))
}

/// The longest form of a value of the process's set, in bytes (0: none).
pub fn longest() -> usize {
    read(|s| if s.is_empty() { 0 } else { s.longest })
}

/// Where to cut `bytes` at or before `at` so that no value is split: the
/// start of a value that runs across `at`, else `at`. A cut at 0 (a value
/// starts the bytes) is returned as `at`: the value is then longer than the
/// piece, and is cut wherever it is. `bytes` must hold [`longest`] − 1 bytes
/// past `at` for a value there to be seen whole.
pub fn cut_before(bytes: &[u8], at: usize) -> usize {
    read(|s| s.cut_before(bytes, at))
}

impl Secrets {
    /// [`cut_before`] for this set.
    pub fn cut_before(&self, bytes: &[u8], at: usize) -> usize {
        let Some(m) = self.matcher.as_ref().filter(|_| !self.is_empty()) else {
            return at;
        };
        let window = &bytes[..bytes.len().min(at + self.longest)];
        m.find_iter(window)
            .find(|f| f.start() < at && f.end() > at)
            .map_or(at, |f| if f.start() == 0 { at } else { f.start() })
    }
}

/// Streamed bytes redacted as they come: a value split across two chunks
/// is still found, because the last bytes of each chunk that could start
/// one are held back until the next chunk (or [`Carry::finish`]).
#[derive(Debug, Default)]
pub struct Carry {
    held: Vec<u8>,
}

impl Carry {
    /// Takes the next chunk; returns what can be written now, redacted by
    /// `set`.
    pub fn push_with(&mut self, set: &Secrets, chunk: &[u8]) -> Vec<u8> {
        self.held.extend_from_slice(chunk);
        let Some(m) = set.matcher.as_ref().filter(|_| !set.is_empty()) else {
            return std::mem::take(&mut self.held);
        };
        // A value not yet complete starts after `cut` (it is at most
        // `longest` bytes and runs past the end), so everything before
        // `cut`, and every match that starts there, can go out now.
        let cut = self
            .held
            .len()
            .saturating_sub(set.longest.saturating_sub(1));
        let mut out = Vec::with_capacity(cut + MASK.len());
        let mut at = 0;
        for found in m.find_iter(&self.held[..]) {
            if found.start() >= cut {
                break;
            }
            out.extend_from_slice(&self.held[at..found.start()]);
            out.extend_from_slice(MASK.as_bytes());
            at = found.end();
        }
        let upto = cut.max(at);
        out.extend_from_slice(&self.held[at..upto]);
        self.held.drain(..upto);
        out
    }

    /// The held bytes, redacted by `set`: the stream ended.
    pub fn finish_with(&mut self, set: &Secrets) -> Vec<u8> {
        let held = std::mem::take(&mut self.held);
        set.redact_bytes(&held).into_owned()
    }

    /// [`Self::push_with`] the process's set.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        read(|s| self.push_with(s, chunk))
    }

    /// [`Self::finish_with`] the process's set.
    pub fn finish(&mut self) -> Vec<u8> {
        read(|s| self.finish_with(s))
    }
}

// ------------------------------------------------------------ CCCI_REDACT --

/// One item of `CCCI_REDACT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A variable of cc-ci-run's environment whose value is a secret.
    Var(String),
    /// An absolute path of a file whose content is a secret.
    File(String),
}

const RULE: &str = "must be a comma list of variable names (A-Z, a-z, 0-9, '_', not starting with a digit) and absolute file paths (starting with '/')";

/// Parses `CCCI_REDACT`: a comma list of variable names and absolute file
/// paths (an item starting with `/`); blanks around items and empty items
/// are passed over. Pure.
pub fn parse(text: &str) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    for raw in text.split(',') {
        let item = raw.trim();
        if item.is_empty() {
            continue;
        }
        let parsed = if item.starts_with('/') {
            Item::File(item.to_string())
        } else if is_var_name(item) {
            Item::Var(item.to_string())
        } else {
            return Err(Failure::usage(format!(
                "invalid {VAR} item {item:?}: {RULE}"
            )));
        };
        if !items.contains(&parsed) {
            items.push(parsed);
        }
    }
    Ok(items)
}

fn is_var_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// The values `CCCI_REDACT` names, and the warnings to say about items that
/// hide nothing. A variable that is unset or empty hides nothing (a warning:
/// Drone hands no secrets to a pull request from a fork, and such a run must
/// still go on; what is not there cannot leak). A file that cannot be read is
/// exit 2, nothing touched: the operator named a secret that cc-ci-run cannot
/// hide. A value shorter than [`MIN_LEN`] is a warning. `read_file` reads a
/// file (injected for tests).
pub fn values(
    items: &[Item],
    env: &Env,
    read_file: impl Fn(&str) -> std::io::Result<Vec<u8>>,
) -> Result<(Vec<String>, Vec<String>)> {
    let mut values = Vec::new();
    let mut warnings = Vec::new();
    let short = |what: &str| {
        format!("warning: {VAR}: {what} is shorter than {MIN_LEN} characters and is not hidden")
    };
    for item in items {
        match item {
            Item::Var(name) => match env.get(name).map(String::as_str) {
                None | Some("") => warnings.push(format!(
                    "warning: {VAR}: the variable {name} is not set (or empty): nothing of it to hide"
                )),
                Some(v) if !long_enough(v) => warnings.push(short(&format!("the value of {name}"))),
                Some(v) => values.push(v.to_string()),
            },
            Item::File(path) => {
                let bytes = read_file(path).map_err(|e| {
                    Failure::usage(format!(
                        "invalid {VAR} item {path:?}: the file cannot be read ({e}); it must be a readable file whose content is a secret"
                    ))
                })?;
                let text = String::from_utf8_lossy(&bytes);
                let text = text
                    .strip_suffix("\r\n")
                    .or_else(|| text.strip_suffix('\n'))
                    .unwrap_or(&text);
                if text.is_empty() {
                    warnings.push(format!(
                        "warning: {VAR}: the file {path} is empty: nothing of it to hide"
                    ));
                    continue;
                }
                if !long_enough(text) {
                    warnings.push(short(&format!("the content of {path}")));
                    continue;
                }
                values.push(text.to_string());
                // A multi-line secret is printed, and logged, line by line.
                if text.contains('\n') {
                    values.extend(
                        text.lines()
                            .map(|l| l.trim_end_matches('\r'))
                            .filter(|l| long_enough(l))
                            .map(str::to_string),
                    );
                }
            }
        }
    }
    Ok((values, warnings))
}

/// The values `CCCI_REDACT` names in `env`, files read from disk (see
/// [`values`]); none when it is unset.
pub fn from_env(env: &Env) -> Result<(Vec<String>, Vec<String>)> {
    let Some(spec) = env.get(VAR).filter(|v| !v.trim().is_empty()) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let items = parse(spec)?;
    values(&items, env, |p| std::fs::read(p))
}

/// Hides the values `CCCI_REDACT` names from here on, saying the warnings.
pub fn install_from_env(env: &Env) -> Result<()> {
    let (values, warnings) = from_env(env)?;
    add(&values);
    for w in warnings {
        crate::say!("{w}");
    }
    Ok(())
}

// ------------------------------------------------- abra app new -S's table --

/// The secret values in what `abra app new -S` printed: the VALUE column of
/// its table of generated secrets. abra draws it with box characters
/// (`│ NAME │ VALUE │`, the stand-in does the same); older releases drew it
/// in ASCII (`| NAME | VALUE |`): both are read. Rows count from a
/// two-column header whose second title is VALUE (any case) to the table's
/// end. Pure.
pub fn generated_secrets(output: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_table = false;
    for line in output.lines() {
        let t = line.trim();
        let cells: Vec<&str> = match t.chars().next() {
            Some('│') | Some('|') | Some('┃') => t
                .trim_matches(['│', '|', '┃'])
                .split(['│', '|', '┃'])
                .map(str::trim)
                .collect(),
            // Border lines (┌─┬─┐, +---+) keep a table going.
            Some(c) if "┌├└┏┣┗╭╰+─━-".contains(c) => continue,
            _ => {
                in_table = false;
                continue;
            }
        };
        if cells.len() != 2 {
            continue;
        }
        // The first column's title has varied (NAME, SECRET NAME): the
        // VALUE column is what says this is the secrets table.
        if cells[1].eq_ignore_ascii_case("value") {
            in_table = true;
            continue;
        }
        if in_table && !cells[1].is_empty() {
            out.push(cells[1].to_string());
        }
    }
    out
}
