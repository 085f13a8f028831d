//! Compose variable interpolation (pure): what `docker stack deploy` does
//! to a compose value before the engine sees it, so that recipe facts
//! (backup labels, images) are read as they will be deployed (SPEC section
//! 3 step 8). Real recipes write `backupbot.backup=${ENABLE_BACKUPS:-true}`;
//! the raw text is not the label the service carries.
//!
//! The forms, and what `docker stack deploy` makes of them (docker/cli's
//! compose template code, measured on Docker 20.10; abra's deploy is
//! built on docker/cli's stack code, so it is taken to read them alike):
//!
//! | text | value |
//! |---|---|
//! | `$$` | a literal `$` |
//! | `$VAR`, `${VAR}` | VAR's value; unset is the empty string |
//! | `${VAR:-word}` | word when VAR is unset or empty |
//! | `${VAR-word}` | word when VAR is unset |
//! | `${VAR:?msg}` | an error naming VAR and msg when VAR is unset or empty |
//! | `${VAR?msg}` | an error naming VAR and msg when VAR is unset |
//! | `${VAR:+word}` | word when VAR is set and not empty, else empty |
//! | `${VAR+word}` | word when VAR is set, else empty |
//!
//! Names are `[A-Za-z_][A-Za-z0-9_]*` (docker matches them
//! case-insensitively, so lower-case names are names too). Anything else
//! after a `$` (`${`, `${}`, `$1`, a lone `$`) is malformed, as docker
//! refuses it: the error gives the 1-based column of that `$`.
//!
//! A `word` or `msg` is literal text up to the first `}`. That is what
//! docker deploys: `${A:-${B:-c}}` with A unset gives the label
//! `${B:-c}` (the word `${B:-c` and the `}` after it), and `${A:-$B}`
//! gives `$B`. compose-go (docker compose) would interpolate the nested
//! `${B:-c}` to `c`; reading it that way would make the harness decide on
//! a value the engine never got, so it does not.
//!
//! `:+` and `+` are compose-go's; docker 20.10 refuses them ("invalid
//! interpolation format"), so a recipe that uses them fails its deploy and
//! the value read here never meets a deployed app. They are read as
//! compose-go reads them.

use std::collections::BTreeMap;
use std::fmt;

/// A value after interpolation, and the variables it read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interpolated {
    pub value: String,
    /// Every variable the text referred to, in order of first use, with
    /// its value (`None`: unset). Callers log these to say where a value
    /// came from, and warn about unset ones as compose does.
    pub vars: Vec<(String, Option<String>)>,
}

impl Interpolated {
    /// The variables the text used that are unset (compose's warnings).
    pub fn unset(&self) -> Vec<&str> {
        self.vars
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.as_str())
            .collect()
    }
}

/// Why a text cannot be interpolated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// `${VAR:?msg}` or `${VAR?msg}` with VAR missing (or empty, for `:?`).
    Required { name: String, message: String },
    /// Not a valid interpolation; `column` is the 1-based character column
    /// of the `$` that starts the bad part.
    Malformed { column: usize, what: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Required { name, message } if message.is_empty() => {
                write!(f, "required variable {name} is missing a value")
            }
            Error::Required { name, message } => {
                write!(f, "required variable {name} is missing a value: {message}")
            }
            Error::Malformed { column, what } => {
                write!(f, "invalid interpolation at column {column}: {what}")
            }
        }
    }
}

impl std::error::Error for Error {}

/// Interpolates `text` with `vars` (pure).
pub fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> Result<Interpolated, Error> {
    let chars: Vec<char> = text.chars().collect();
    let mut p = Parser {
        chars: &chars,
        pos: 0,
        vars,
        used: Vec::new(),
    };
    let value = p.text()?;
    Ok(Interpolated {
        value,
        vars: p.used,
    })
}

struct Parser<'a> {
    chars: &'a [char],
    pos: usize,
    vars: &'a BTreeMap<String, String>,
    used: Vec<(String, Option<String>)>,
}

fn name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The operators that may follow a name inside `${`.
#[derive(Clone, Copy)]
enum Op {
    Default,
    Required,
    Alternative,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn malformed(&self, dollar: usize, what: impl Into<String>) -> Error {
        Error::Malformed {
            column: dollar + 1,
            what: what.into(),
        }
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        let value = self.vars.get(name).cloned();
        if !self.used.iter().any(|(n, _)| n == name) {
            self.used.push((name.to_string(), value.clone()));
        }
        value
    }

    /// Text up to the end.
    fn text(&mut self) -> Result<String, Error> {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if c == '$' {
                out.push_str(&self.dollar()?);
            } else {
                out.push(c);
                self.pos += 1;
            }
        }
        Ok(out)
    }

    /// The word of the `${NAME` whose `$` is at `at`: literal text up to
    /// the first `}` (consumed), as docker reads it (module header).
    fn word(&mut self, at: usize, name: &str) -> Result<String, Error> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            self.pos += 1;
            if c == '}' {
                return Ok(self.chars[start..self.pos - 1].iter().collect());
            }
        }
        Err(self.malformed(at, format!("`${{{name}` is not closed")))
    }

    fn name(&mut self) -> String {
        let start = self.pos;
        if self.peek().is_some_and(name_start) {
            while self.peek().is_some_and(name_char) {
                self.pos += 1;
            }
        }
        self.chars[start..self.pos].iter().collect()
    }

    /// One `$...` at `self.pos`.
    fn dollar(&mut self) -> Result<String, Error> {
        let at = self.pos;
        self.pos += 1;
        match self.peek() {
            Some('$') => {
                self.pos += 1;
                Ok("$".to_string())
            }
            Some('{') => {
                self.pos += 1;
                self.braced(at)
            }
            Some(c) if name_start(c) => {
                let name = self.name();
                Ok(self.lookup(&name).unwrap_or_default())
            }
            Some(c) => Err(self.malformed(
                at,
                format!("`${c}`: `$` must be followed by a variable name, `{{` or `$` (write `$$` for a literal `$`)"),
            )),
            None => Err(self.malformed(
                at,
                "a lone `$` at the end: write `$$` for a literal `$`",
            )),
        }
    }

    /// The rest of `${...}` after the `{`; `at` is the `$`.
    fn braced(&mut self, at: usize) -> Result<String, Error> {
        let name = self.name();
        if name.is_empty() {
            return Err(match self.peek() {
                Some('}') => self.malformed(at, "`${}` names no variable"),
                None => self.malformed(at, "`${` is not closed"),
                Some(c) => self.malformed(
                    at,
                    format!("`${{` must be followed by a variable name, not {c:?}"),
                ),
            });
        }
        let colon = self.peek() == Some(':');
        if colon {
            self.pos += 1;
        }
        let op = match self.peek() {
            Some('}') if !colon => {
                self.pos += 1;
                return Ok(self.lookup(&name).unwrap_or_default());
            }
            Some('-') => Op::Default,
            Some('?') => Op::Required,
            Some('+') => Op::Alternative,
            None => return Err(self.malformed(at, format!("`${{{name}` is not closed"))),
            Some(c) => {
                let after = if colon { ":" } else { "" };
                return Err(self.malformed(
                    at,
                    format!(
                        "unexpected {c:?} after `${{{name}{after}` (expected `}}`, `-`, `?` or `+`, with an optional `:` before them)"
                    ),
                ));
            }
        };
        self.pos += 1;
        let value = self.lookup(&name);
        let word = self.word(at, &name)?;
        // With `:` an empty value counts as missing, as in the shell.
        let present = match &value {
            Some(v) => !colon || !v.is_empty(),
            None => false,
        };
        Ok(match op {
            Op::Default if present => value.unwrap_or_default(),
            Op::Default => word,
            Op::Required if present => value.unwrap_or_default(),
            Op::Required => {
                return Err(Error::Required {
                    name,
                    message: word,
                })
            }
            Op::Alternative if present => word,
            Op::Alternative => String::new(),
        })
    }
}
